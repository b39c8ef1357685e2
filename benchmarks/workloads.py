"""The workloads `benchmarks/run.py` measures, one per fresh process.

Each workload runs N dialogues of at most K turns, C at a time, after a
small untimed warm-up, and returns what it measured: turns, wall time and
process CPU time of the timed part. `run.py` adds the peak RSS of the
process (`ru_maxrss`), which is why every workload gets its own process.

HTTP workloads talk to `convo-sim serve --canned` (a fixed tiny reply after
a fixed latency) running in another process; one turn is two requests, the
simulated user's and the assistant's, as in a real LLM-vs-LLM dialogue.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

WARMUP_DIALOGUES = 8
GOAL = "Book a 30-minute meeting with Alex before noon, then a gym session after 5pm."
# The baseline sends a user system prompt as long as LLMUser's for GOAL.
BASELINE_USER_PROMPT = "You are role-playing a user. " * 25


@dataclass
class Outcome:
    """What one workload measured (the timed part only)."""

    dialogues: int
    turns: int
    failures: int
    wall_s: float
    cpu_s: float
    reward: float | None = None
    peak_in_flight: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class InFlight:
    """Counts dialogues started and finished; keeps the most running at once.

    Through the engine, a dialogue starts when its actors are built and ends
    when its reward is computed (the last step of `run_dialogue`), not when
    its rollout is consumed: a finished rollout may wait in the results
    buffer while its slot already runs the next dialogue.
    """

    def __init__(self) -> None:
        self.running = self.peak = 0

    def start(self) -> None:
        self.running += 1
        self.peak = max(self.peak, self.running)

    def end(self) -> None:
        self.running -= 1


async def _timed(
    run: Callable[[], Awaitable[tuple[int, int, int, float | None]]], in_flight: InFlight
) -> Outcome:
    in_flight.peak = 0
    wall, cpu = time.perf_counter(), time.process_time()
    dialogues, turns, failures, reward = await run()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return Outcome(dialogues, turns, failures, wall, cpu, reward, in_flight.peak)


# -- (a) the baseline: a bare aiohttp loop ---------------------------------------


async def baseline(url: str, n: int, k: int, c: int) -> Outcome:
    """N dialogues of K turns as bare HTTP calls: the floor for any client."""
    import aiohttp

    connector = aiohttp.TCPConnector(limit=c)
    async with aiohttp.ClientSession(connector=connector) as session:
        slots = asyncio.Semaphore(c)
        in_flight = InFlight()

        async def call(messages: list[dict[str, str]]) -> str:
            body = {"model": "canned", "messages": messages}
            async with session.post(f"{url}/chat/completions", json=body) as response:
                response.raise_for_status()
                data = await response.json()
            return str(data["choices"][0]["message"]["content"])

        async def dialogue() -> None:
            async with slots:
                in_flight.start()
                spoken: list[dict[str, str]] = []
                for _ in range(k):
                    flipped = [
                        {"role": "assistant" if m["role"] == "user" else "user", **_text(m)}
                        for m in spoken
                    ]
                    said = await call(
                        [{"role": "system", "content": BASELINE_USER_PROMPT}, *flipped]
                    )
                    spoken.append({"role": "user", "content": said})
                    spoken.append({"role": "assistant", "content": await call(spoken)})
                in_flight.end()

        async def run(count: int) -> tuple[int, int, int, float | None]:
            await asyncio.gather(*(dialogue() for _ in range(count)))
            return count, count * k, 0, None

        await run(WARMUP_DIALOGUES)
        return await _timed(lambda: run(n), in_flight)


def _text(message: dict[str, str]) -> dict[str, str]:
    return {"content": message["content"]}


# -- the other candidate for the lean transport: aiohttp's client ---------------------


class AiohttpPost:
    """aiohttp's client behind `FastHTTPClient`'s interface (`post`, `aclose`).

    The candidate measured against the thin pool with llhttp (`lean`): the
    same JSON layer, retry layer and errors above it, with what the issue
    asks of either (a body cap for every framing, the environment's proxies,
    TLS), so the variants differ in the HTTP client only. The proxy is
    looked up once, as `lean` does: aiohttp's own `trust_env=True` reads the
    environment (and `~/.netrc`) on every request, which measured ~3x
    slower still.
    """

    def __init__(
        self,
        base_url: str,
        *,
        headers: dict[str, str],
        timeout: float,
        max_connections: int = 1000,
        max_body: int = 64 * 1024 * 1024,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = {**headers, "Content-Type": "application/json"}
        self.timeout = timeout
        self.max_connections = max_connections
        self.max_body = max_body
        self._session: Any = None
        from convo_sim._http_proxy import proxy_from_environment

        self.proxy = proxy_from_environment(base_url)

    async def post(self, path: str, body: bytes) -> Any:
        import aiohttp

        from convo_sim._fast_http import (
            HTTPResponse,
            HTTPStatusError,
            RequestTimeout,
            TransportError,
        )

        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.max_connections, keepalive_timeout=4.0),
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                headers=self.headers,
            )
        try:
            async with self._session.post(
                self.base_url + path, data=body, proxy=self.proxy
            ) as response:
                chunks, size = [], 0
                async for chunk in response.content.iter_any():
                    size += len(chunk)
                    if size > self.max_body:
                        raise TransportError(f"the reply is larger than {self.max_body} bytes")
                    chunks.append(chunk)
                status, raw = response.status, response.raw_headers
        except TimeoutError:
            raise RequestTimeout("no complete reply within the timeout") from None
        except aiohttp.ClientError as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}") from None
        reply = HTTPResponse(status, list(raw), b"".join(chunks))
        if status >= 400:
            raise HTTPStatusError(status, reply.headers, reply.body)
        return reply

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


# -- (b) open_rollouts over HTTP with the LLM actors ---------------------------


async def rollouts_http(
    url: str,
    n: int,
    k: int,
    c: int,
    transport: str,
    *,
    tune_gc: bool = True,
    admission: int | None = None,
) -> Outcome:
    """LLMAssistant + LLMUser over `OpenAIChatModel(transport=...)`, via open_rollouts.

    `tune_gc`: the RolloutPlan's own option (default True, what a user
    gets); False shows what the engine's collector tuning is worth.
    `admission`: the model is a `ModelPool` over the one server with this
    many requests in flight at most, and no turn timeout: what 100,000
    dialogues at once need (the queue for the model is longer than any
    per-turn or per-request timeout would allow).
    """
    from convo_sim import ModelPool, configure_logging
    from convo_sim.agents import LLMAssistant
    from convo_sim.scenarios import Scenario
    from convo_sim.users import LLMUser

    configure_logging("warning")  # what the CLI does: events below it cost next to nothing
    model = _model(url, transport)
    if admission is not None:
        model = ModelPool([model], max_in_flight=admission)
    # Both actors are stateless, so one of each serves every dialogue.
    assistant, user = LLMAssistant(model), LLMUser(model, goal=GOAL)
    try:
        return await _rollouts(
            lambda count, tag: [Scenario(id=f"{tag}-{i}") for i in range(count)],
            n,
            c,
            k,
            assistant=lambda scenario, seed: assistant,
            user=lambda scenario, seed: user,
            tune_gc=tune_gc,
            turn_timeout=None if admission is not None else 60.0,
        )
    finally:
        await model.aclose()


def _model(url: str, transport: str) -> Any:
    """`OpenAIChatModel("canned")` over `lean`, `sdk` or `lean-aiohttp`.

    `lean-aiohttp` is the `lean` transport (the JSON layer, `FastChatTransport`)
    with aiohttp's client in place of the thin pool.
    """
    from convo_sim._fast_chat import FastChatTransport
    from convo_sim._openai_model import LOCAL_API_KEY, OpenAIChatModel

    assert transport in ("lean", "sdk", "lean-aiohttp")
    model = OpenAIChatModel(
        "canned", base_url=url, transport="sdk" if transport == "sdk" else "lean"
    )
    if transport == "lean-aiohttp":
        lean = FastChatTransport(url, api_key=LOCAL_API_KEY, timeout=model.timeout)
        lean.http = AiohttpPost(  # type: ignore[assignment]
            url, headers={"Authorization": f"Bearer {LOCAL_API_KEY}"}, timeout=model.timeout
        )
        model._lean = lean  # the benchmark swaps the seam the adapter would build
    return model


async def dialogues_http(url: str, n: int, k: int, transport: str) -> Outcome:
    """All N dialogues at once, each a `run_dialogue` task in one task group.

    The LLM actors over `OpenAIChatModel(transport=...)`, as in
    `rollouts_http`, without the rollout engine (and so without its
    collector tuning): the orchestrator alone, N dialogues in flight together.
    """
    import anyio

    from convo_sim import configure_logging, run_dialogue
    from convo_sim.agents import LLMAssistant
    from convo_sim.users import LLMUser

    configure_logging("warning")
    model = _model(url, transport)
    assistant, user = LLMAssistant(model), LLMUser(model, goal=GOAL)
    in_flight = InFlight()

    async def run(count: int) -> tuple[int, int, int, float | None]:
        totals = [0, 0]  # turns, failures

        async def one() -> None:
            in_flight.start()
            result = await run_dialogue(assistant, user, max_turns=k)
            in_flight.end()
            totals[0] += result.turns
            totals[1] += result.error is not None

        async with anyio.create_task_group() as tg:
            for _ in range(count):
                tg.start_soon(one)
        return count, totals[0], totals[1], None

    try:
        await run(WARMUP_DIALOGUES)
        return await _timed(lambda: run(n), in_flight)
    finally:
        await model.aclose()


# -- (c) in process -------------------------------------------------------------------


async def scripted(n: int, k: int, c: int) -> Outcome:
    """Scripted assistant and user, no HTTP, via open_rollouts."""
    from convo_sim import configure_logging
    from convo_sim.agents import ScriptedAssistant
    from convo_sim.scenarios import Scenario
    from convo_sim.users import ScriptedUser

    configure_logging("warning")
    return await _rollouts(
        lambda count, tag: [Scenario(id=f"{tag}-{i}") for i in range(count)],
        n,
        c,
        k,
        assistant=lambda scenario, seed: ScriptedAssistant(["Done."], when_done="repeat"),
        user=lambda scenario, seed: ScriptedUser(["Add lunch at noon."], when_done="repeat"),
    )


async def calendar(
    n: int, c: int, max_turns: int, *, personas: bool = False, verify: bool = True
) -> Outcome:
    """The rule-based calendar actors with the calendar turn and final verifiers.

    Generated scenarios (each provably solvable); a dialogue runs until the
    user has its calendar (its stop token) or `max_turns`. With `personas`
    False: `CalendarSolverAssistant` + `CalendarUser`; with True: what
    `convo-sim run` wires, whose default user plays the persona a scenario
    names (`PersonaCalendarUser`, most generated scenarios name one). With
    `verify` False, no verifiers: what the actors and the engine cost alone.
    """
    from convo_sim import configure_logging
    from convo_sim.agents import CalendarSolverAssistant
    from convo_sim.domains.calendar import DOMAIN
    from convo_sim.scenarios import generate_calendar_scenarios
    from convo_sim.users import CalendarUser
    from convo_sim.verifiers import calendar_verifiers

    configure_logging("warning")
    factories: dict[str, Any] = {"assistant": DOMAIN.assistant, "user": DOMAIN.user}
    if not personas:
        factories = {
            "assistant": lambda scenario, seed: CalendarSolverAssistant(),
            "user": lambda scenario, seed: CalendarUser(scenario, seed=seed),
        }
    return await _rollouts(
        lambda count, tag: generate_calendar_scenarios(count, seed=7, id_prefix=tag),
        n,
        c,
        max_turns,
        verifiers=calendar_verifiers if verify else None,
        **factories,
    )


async def _rollouts(
    scenarios: Callable[[int, str], list[Any]],
    n: int,
    c: int,
    k: int,
    **options: Any,
) -> Outcome:
    await timed_rollouts(scenarios(WARMUP_DIALOGUES, "warmup"), c, k, **options)
    timed = scenarios(n, "bench")  # built before the clock starts
    return await timed_rollouts(timed, c, k, **options)


async def timed_rollouts(items: list[Any], c: int, k: int, **options: Any) -> Outcome:
    """One run of `open_rollouts` over `items`, C at once, at most K turns, timed."""
    from convo_sim import RolloutPlan, open_rollouts
    from convo_sim._verification import final_only

    in_flight = InFlight()
    make_assistant = options.pop("assistant")
    # The engine's default reward for these suites: the final verdicts
    # (None without verifiers); wrapped only to see each dialogue end.
    final = final_only()

    def assistant(scenario: Any, seed: int) -> Any:
        in_flight.start()  # the engine builds the actors as a dialogue starts
        return make_assistant(scenario, seed)

    def reward(scores: Any, verdicts: Any) -> float | None:
        in_flight.end()  # the dialogue's last step
        return final(scores, verdicts)

    async def run() -> tuple[int, int, int, float | None]:
        dialogues = turns = failures = 0
        rewards: list[float] = []
        plan = RolloutPlan(
            concurrency=c, max_turns=k, assistant=assistant, reward=reward, **options
        )
        async with open_rollouts(items, plan) as rollouts:
            async for rollout in rollouts:
                dialogues += 1
                turns += rollout.turns
                failures += rollout.error is not None
                if rollout.reward is not None:
                    rewards.append(rollout.reward)
        return dialogues, turns, failures, sum(rewards) / len(rewards) if rewards else None

    return await _timed(run, in_flight)
