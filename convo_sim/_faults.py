"""Faults the bundled model server can inject, for testing the LLM path.

A `FaultPlan` is an ordered list of rules. For each request the server asks
the plan for a fault (`take`); the first rule that matches the request and
has uses left fires and uses one up. A rule matches by model name, by a
predicate over the request body, or both, and may skip its first matches::

    plan = FaultPlan()
    plan.add(Fault.rate_limit(retry_after="0"), times=2)       # first 2 requests
    plan.add(Fault.server_error(503), model="calendar-user")   # next user request
    plan.add(Fault.disconnect(), model="broken", times=None)   # every request, forever

Faults act before the reply starts: an HTTP error status (429 with
`Retry-After`, 5xx, 401 echoing the key as some servers do), a hang longer
than the client's timeout, a malformed JSON body, a dropped connection, or a
normal reply with empty content. The plan is thread-safe, so a test may edit
it while a server thread runs.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["Fault", "FaultKind", "FaultPlan", "FaultRule"]

FaultKind = Literal["status", "hang", "malformed", "disconnect", "empty", "unauthorized"]


@dataclass(frozen=True, slots=True)
class Fault:
    """One injected failure.

    Attributes:
        kind: what happens (see the constructors).
        status: the HTTP status, for `status`.
        retry_after: the `Retry-After` header to send, if any.
        seconds: how long a `hang` lasts before the reply is sent anyway.
    """

    kind: FaultKind
    status: int = 500
    retry_after: str | None = None
    seconds: float = 30.0

    @classmethod
    def rate_limit(cls, retry_after: str | None = "0") -> Fault:
        """A 429 with `Retry-After` (seconds or an HTTP date; None to omit it)."""
        return cls("status", status=429, retry_after=retry_after)

    @classmethod
    def server_error(cls, status: int = 500) -> Fault:
        """A 5xx (or any status) with an OpenAI-style error body."""
        return cls("status", status=status)

    @classmethod
    def hang(cls, seconds: float = 30.0) -> Fault:
        """Wait `seconds` before answering: longer than the client's timeout."""
        return cls("hang", seconds=seconds)

    @classmethod
    def malformed(cls) -> Fault:
        """A 200 whose JSON body is cut off halfway."""
        return cls("malformed", status=200)

    @classmethod
    def disconnect(cls) -> Fault:
        """Close the connection after reading the request, without a reply."""
        return cls("disconnect")

    @classmethod
    def empty(cls) -> Fault:
        """A well-formed reply with empty content."""
        return cls("empty", status=200)

    @classmethod
    def unauthorized(cls) -> Fault:
        """A 401 whose message quotes the bearer token, as some servers do."""
        return cls("unauthorized", status=401)


@dataclass(slots=True)
class FaultRule:
    """A fault and when it fires.

    Attributes:
        fault: what to inject.
        model: only requests for this model name (None: any).
        where: only requests whose JSON body satisfies it (None: any).
        times: how many matching requests it fires on (None: all of them).
        skip: matching requests to let through before it starts firing.
    """

    fault: Fault
    model: str | None = None
    where: Callable[[Mapping[str, Any]], bool] | None = None
    times: int | None = 1
    skip: int = 0
    fired: int = 0

    def matches(self, model: str, body: Mapping[str, Any]) -> bool:
        if self.model is not None and self.model != model:
            return False
        return self.where is None or bool(self.where(body))

    @property
    def spent(self) -> bool:
        return self.times is not None and self.fired >= self.times


@dataclass
class FaultPlan:
    """The faults a server injects, in rule order; empty means none.

    Attributes:
        rules: the rules, checked in order.
        injected: how many times each fault kind fired (for assertions).
    """

    rules: list[FaultRule] = field(default_factory=list)
    injected: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(
        self,
        fault: Fault,
        *,
        model: str | None = None,
        where: Callable[[Mapping[str, Any]], bool] | None = None,
        times: int | None = 1,
        skip: int = 0,
    ) -> FaultPlan:
        """Add a rule at the end and return the plan (calls chain).

        Raises:
            ValueError: `times` or `skip` is negative.
        """
        if (times is not None and times < 0) or skip < 0:
            raise ValueError(f"times and skip must be >= 0, got times={times!r}, skip={skip!r}")
        with self._lock:
            self.rules.append(FaultRule(fault, model, where, times, skip))
        return self

    def clear(self) -> None:
        """Remove every rule (the `injected` counts stay)."""
        with self._lock:
            self.rules.clear()

    def take(self, model: str, body: Mapping[str, Any]) -> Fault | None:
        """The fault for this request, if any; uses up one firing of its rule."""
        with self._lock:
            for rule in self.rules:
                if rule.spent or not rule.matches(model, body):
                    continue
                if rule.skip:
                    rule.skip -= 1
                    # A skipped request is let through untouched by later rules
                    # too: "skip the first N" means those N are clean.
                    return None
                rule.fired += 1
                self.injected[rule.fault.kind] += 1
                return rule.fault
            return None
