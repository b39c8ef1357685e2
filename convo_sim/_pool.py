"""A `ChatModel` over several replicas of one model: affinity, least-loaded, failover, admission.

Multi-turn traffic resends the whole conversation every turn, so a
dialogue that returns to the replica that served its previous turn finds
its prefix in that server's cache (vLLM's and SGLang's prefix caching) and
skips most of the prefill. `ModelPool` routes accordingly:

* **affinity**: the first request of a dialogue binds it to a replica, and
  the rest of the dialogue goes there while that replica is healthy. The
  dialogue is the one `run_dialogue` opened (`convo_sim._affinity`); a
  call made outside any dialogue is routed as a new dialogue, unbound.
* **least loaded**: a new dialogue goes to the healthy replica with the
  fewest dialogues bound to it, then the fewest requests in flight (ties
  go round the replicas in turn).
* **failover**: a replica whose request fails for good (after the
  replica's own retries) with a server-side failure (no reply, a timeout,
  a garbled body, 5xx, 408, 429) is taken out for `cooldown` seconds,
  doubling while it keeps failing; the request is sent again to another
  replica, and every dialogue bound to the failed one moves on its next
  request. Once the cooldown has passed, one request at a time probes the
  replica; the first success puts it back. Other failures (a 400, a 401)
  are the request's own and are raised as they are.
* **admission control**: at most `max_in_flight` requests run on one
  replica at once; the others wait their turn, first come first served,
  for that replica (a dialogue keeps its replica rather than jumping
  queues). A fleet is not capped by one global connection limit.

`routing="round_robin"` sends each request to the next healthy replica in
turn instead (no affinity): what `benchmarks/run.py --only replicas`
compares against. Counts per replica (`stats()`) feed the CLI's progress
line and summary.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import anyio

from convo_sim._affinity import DialogueScope, current_dialogue
from convo_sim._errors import ModelError
from convo_sim._logging import get_logger
from convo_sim._messages import Message
from convo_sim._models import ChatModel, Completion, ModelSettings

__all__ = ["ModelPool", "ReplicaStats", "Routing", "format_replicas", "merge_stats"]

_log = get_logger("convo_sim.pool")

Routing = Literal["affinity", "round_robin"]

_REPLICA_STATUSES = frozenset((408, 429))
_MAX_COOLDOWN = 60.0
_DEFAULT_SETTINGS = ModelSettings()


@dataclass(frozen=True, slots=True)
class ReplicaStats:
    """One replica's counts at one moment.

    Attributes:
        name: the replica's name (its host and port, by default).
        healthy: False while it is taken out after a failure.
        in_flight: requests running on it now.
        waiting: requests waiting for one of its `max_in_flight` slots.
        peak_in_flight: the most requests that ever ran on it at once.
        dialogues: dialogues bound to it now.
        requests: requests it answered.
        failures: requests that failed on it and were sent elsewhere or raised.
        moved: dialogues that left it because it failed.
    """

    name: str
    healthy: bool
    in_flight: int
    waiting: int
    peak_in_flight: int
    dialogues: int
    requests: int
    failures: int
    moved: int


def merge_stats(stats: Iterable[ReplicaStats]) -> list[ReplicaStats]:
    """Counts of several pools over the same replicas, summed by replica name.

    A replica is healthy when it is healthy in every pool; its peak is the
    largest peak of one pool (pools do not share their slots).
    """
    merged: dict[str, ReplicaStats] = {}
    for s in stats:
        seen = merged.get(s.name)
        merged[s.name] = (
            s
            if seen is None
            else ReplicaStats(
                name=s.name,
                healthy=seen.healthy and s.healthy,
                in_flight=seen.in_flight + s.in_flight,
                waiting=seen.waiting + s.waiting,
                peak_in_flight=max(seen.peak_in_flight, s.peak_in_flight),
                dialogues=seen.dialogues + s.dialogues,
                requests=seen.requests + s.requests,
                failures=seen.failures + s.failures,
                moved=seen.moved + s.moved,
            )
        )
    return list(merged.values())


def format_replicas(stats: Iterable[ReplicaStats]) -> str:
    """Requests answered per replica, on one line: `a 812, b 790 (down, 3 failed)`."""
    parts = []
    for s in stats:
        notes = [] if s.healthy else ["down"]
        if s.failures:
            notes.append(f"{s.failures:,} failed")
        parts.append(f"{s.name} {s.requests:,}" + (f" ({', '.join(notes)})" if notes else ""))
    return ", ".join(parts)


class _Replica:
    """One replica's model and live counts (the pool's private bookkeeping)."""

    __slots__ = (
        "dialogues",
        "down_until",
        "failures",
        "in_flight",
        "model",
        "moved",
        "name",
        "peak_in_flight",
        "probing",
        "requests",
        "slots",
        "strikes",
        "waiting",
    )

    def __init__(self, model: ChatModel, name: str) -> None:
        self.model = model
        self.name = name
        self.slots: anyio.Semaphore | None = None
        self.reset()

    def reset(self) -> None:
        self.in_flight = self.waiting = self.peak_in_flight = self.dialogues = 0
        self.requests = self.failures = self.moved = self.strikes = 0
        self.down_until = 0.0  # 0: healthy; else the time it may be probed again
        self.probing = False

    def stats(self) -> ReplicaStats:
        return ReplicaStats(
            name=self.name,
            healthy=self.down_until == 0.0,
            in_flight=self.in_flight,
            waiting=self.waiting,
            peak_in_flight=self.peak_in_flight,
            dialogues=self.dialogues,
            requests=self.requests,
            failures=self.failures,
            moved=self.moved,
        )


def replica_failed(exc: BaseException) -> bool:
    """Whether a failed request says more about the replica than about the request."""
    if not isinstance(exc, ModelError):
        return False
    status = exc.status_code
    return status is None or status >= 500 or status in _REPLICA_STATUSES


def _default_names(replicas: Sequence[ChatModel]) -> list[str]:
    urls = [getattr(model, "base_url", None) for model in replicas]
    hosts = [urlsplit(url).netloc if isinstance(url, str) else "" for url in urls]
    if all(hosts) and len(set(hosts)) == len(hosts):
        return hosts
    if all(isinstance(url, str) for url in urls) and len(set(urls)) == len(urls):
        return [str(url) for url in urls]
    return [f"replica {i}" for i in range(len(replicas))]


class ModelPool:
    """A `ChatModel` that spreads requests over replicas of one model.

    Share one pool between the dialogues (and, if they use the same model,
    both sides): its counts and bindings are what routing decides by.
    Close it with `aclose()` (or `async with`), which closes the replicas.

    Args:
        replicas: the replicas, typically one `OpenAIChatModel` per server.
        max_in_flight: requests at once per replica; the rest wait.
        routing: `affinity` (a dialogue stays on its replica; new ones go
            to the least loaded) or `round_robin` (each request to the next).
        cooldown: seconds a failed replica stays out before it is probed;
            doubled on every failure in a row, up to 60.
        names: a name per replica for stats and logs; default each
            replica's host and port.

    Raises:
        ValueError: no replicas, a bound below 1, a negative cooldown, or
            names that do not match the replicas.
    """

    def __init__(
        self,
        replicas: Sequence[ChatModel],
        *,
        max_in_flight: int = 256,
        routing: Routing = "affinity",
        cooldown: float = 5.0,
        names: Sequence[str] | None = None,
    ) -> None:
        if not replicas:
            raise ValueError("a pool needs at least one replica")
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, got {max_in_flight!r}")
        if routing not in ("affinity", "round_robin"):
            raise ValueError(f"routing must be 'affinity' or 'round_robin', got {routing!r}")
        if not (cooldown >= 0 and math.isfinite(cooldown)):
            raise ValueError(f"cooldown must be a finite number >= 0, got {cooldown!r}")
        labels = list(names) if names is not None else _default_names(replicas)
        if len(labels) != len(replicas):
            raise ValueError(f"{len(labels)} names for {len(replicas)} replicas")
        self.max_in_flight = max_in_flight
        self.routing: Routing = routing
        self.cooldown = cooldown
        self._replicas = [
            _Replica(model, name) for model, name in zip(replicas, labels, strict=True)
        ]
        self._turn = 0

    def __repr__(self) -> str:
        names = ", ".join(r.name for r in self._replicas)
        return f"ModelPool([{names}], routing={self.routing!r}, max_in_flight={self.max_in_flight})"

    @property
    def replicas(self) -> tuple[ChatModel, ...]:
        """The replicas' models, in order."""
        return tuple(r.model for r in self._replicas)

    def stats(self) -> tuple[ReplicaStats, ...]:
        """Every replica's counts now, in order."""
        return tuple(r.stats() for r in self._replicas)

    # -- the ChatModel seam ---------------------------------------------------

    async def complete(
        self, messages: Sequence[Message], settings: ModelSettings | None = None
    ) -> Completion:
        """Send `messages` to the dialogue's replica (or the least loaded) and return the reply.

        Raises:
            ModelError: the request failed for good on every replica it was
                sent to, or failed for a reason of its own (a 4xx).
        """
        scope = current_dialogue() if self.routing == "affinity" else None
        tried: set[int] | None = None
        while True:
            index, probe = self._choose(scope, tried)
            replica = self._replicas[index]
            try:
                completion = await self._send(replica, messages, settings)
            except Exception as exc:  # cancellation is a BaseException and passes through
                if not replica_failed(exc):
                    raise
                self._failed(index, scope, exc)
                tried = tried or set()
                tried.add(index)
                if len(tried) == len(self._replicas):
                    raise
                continue
            finally:
                if probe:
                    replica.probing = False  # answered, failed or cancelled: the probe is over
            self._succeeded(replica)
            if probe and scope is not None and scope.replica_for(self) is None:
                # The probe proved the replica: the dialogue stays with it.
                scope.bind(self, index)
                replica.dialogues += 1
            return completion

    async def _send(
        self, replica: _Replica, messages: Sequence[Message], settings: ModelSettings | None
    ) -> Completion:
        slots = replica.slots
        if slots is None:
            # Made on first use, inside the event loop that uses it.
            slots = replica.slots = anyio.Semaphore(self.max_in_flight, fast_acquire=True)
        replica.waiting += 1
        try:
            await slots.acquire()  # no loop turn when a slot is free (fast_acquire)
        finally:
            replica.waiting -= 1
        replica.in_flight += 1
        if replica.in_flight > replica.peak_in_flight:
            replica.peak_in_flight = replica.in_flight
        try:
            return await replica.model.complete(messages, settings or _DEFAULT_SETTINGS)
        finally:
            replica.in_flight -= 1
            slots.release()

    # -- routing --------------------------------------------------------------

    def _choose(self, scope: DialogueScope | None, tried: set[int] | None) -> tuple[int, bool]:
        """The replica for the next attempt, and whether that attempt probes a failed one."""
        if scope is not None:
            bound = scope.replica_for(self)
            if bound is not None:
                if self._replicas[bound].down_until == 0.0 and (not tried or bound not in tried):
                    return bound, False
                # Its replica failed (for this request or another dialogue's): move.
                scope.unbind(self)
                self._replicas[bound].dialogues -= 1
                self._replicas[bound].moved += 1
        index, probe = self._pick(tried)
        if scope is not None and not probe:
            # A probe binds only once it is answered (see `complete`).
            scope.bind(self, index)
            self._replicas[index].dialogues += 1
        return index, probe

    def _pick(self, tried: set[int] | None) -> tuple[int, bool]:
        """The least-loaded healthy replica (or the next, round robin), else a probe."""
        replicas = self._replicas
        count = len(replicas)
        start = self._turn
        self._turn = (start + 1) % count
        best = -1
        best_load: tuple[int, int] = (0, 0)
        now: float | None = None
        probe = -1
        for step in range(count):
            i = (start + step) % count
            if tried and i in tried:
                continue
            replica = replicas[i]
            if replica.down_until != 0.0:
                if probe < 0 and not replica.probing:
                    now = anyio.current_time() if now is None else now
                    if now >= replica.down_until:
                        probe = i
                continue
            if self.routing == "round_robin":
                return i, False  # the first healthy one from this turn's start
            load = (replica.dialogues, replica.in_flight + replica.waiting)
            if best < 0 or load < best_load:
                best, best_load = i, load
        if probe >= 0:
            replicas[probe].probing = True
            return probe, True
        if best >= 0:
            return best, False
        # Every replica left is out and cooling down: try the one back soonest
        # rather than fail a request that one of them may still answer.
        left = [i for i in range(count) if not (tried and i in tried)]
        return min(left, key=lambda i: replicas[i].down_until), False

    def _failed(self, index: int, scope: DialogueScope | None, exc: BaseException) -> None:
        replica = self._replicas[index]
        replica.failures += 1
        replica.strikes += 1
        wait = min(self.cooldown * 2 ** (replica.strikes - 1), _MAX_COOLDOWN)
        # Never 0.0, which means healthy: a zero cooldown is "probe at once".
        replica.down_until = max(anyio.current_time() + wait, math.ulp(0.0))
        if scope is not None and scope.replica_for(self) == index:
            scope.unbind(self)
            replica.dialogues -= 1
            replica.moved += 1
        _log.warning(
            "pool.replica_failed",
            replica=replica.name,
            failures=replica.failures,
            cooldown_s=wait,
            error=type(exc).__name__,
            status=getattr(exc, "status_code", None),
        )

    def _succeeded(self, replica: _Replica) -> None:
        replica.requests += 1
        if replica.down_until != 0.0:
            replica.down_until = 0.0
            replica.strikes = 0
            _log.info("pool.replica_recovered", replica=replica.name)

    def release_binding(self, scope: DialogueScope, replica: int) -> None:
        """A dialogue bound to `replica` has ended (called by its `DialogueScope`)."""
        self._replicas[replica].dialogues -= 1

    # -- lifetime -------------------------------------------------------------

    async def aclose(self) -> None:
        """Close every replica that can be closed (their connection pools)."""
        for replica in self._replicas:
            close = getattr(replica.model, "aclose", None)
            if close is not None:
                await close()
            replica.slots = None

    async def __aenter__(self) -> ModelPool:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # A pool travels to Ray workers inside the factories that hold it: the
    # replicas go (without their keys and connections, see OpenAIChatModel),
    # the counts and slots of this process stay behind.
    def __getstate__(self) -> dict[str, Any]:
        return {
            "max_in_flight": self.max_in_flight,
            "routing": self.routing,
            "cooldown": self.cooldown,
            "replicas": [(r.model, r.name) for r in self._replicas],
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.max_in_flight = state["max_in_flight"]
        self.routing = state["routing"]
        self.cooldown = state["cooldown"]
        self._replicas = [_Replica(model, name) for model, name in state["replicas"]]
        self._turn = 0
