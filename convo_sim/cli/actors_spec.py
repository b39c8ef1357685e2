"""Which actors `convo-sim run` uses: `--assistant` / `--user` specs, as rollout factories.

A spec is `builtin` (the rule-based calendar actors, the default) or
`openai:MODEL` (an LLM actor over an OpenAI-compatible API: OpenAI, vLLM, or
`convo-sim serve`, whose models `calendar-solver` and `calendar-user` are
the rule-based actors again, behind HTTP)::

    convo-sim run --assistant openai:gpt-4o-mini --user openai:gpt-4o-mini
    convo-sim run --assistant openai:calendar-solver --user openai:calendar-user \\
        --base-url http://127.0.0.1:8000/v1

The factories are picklable (plain data and top-level classes) so that the
Ray backend can ship them; each process builds one `OpenAIChatModel` per
spec on first use and shares it, with its connection pool, between all the
dialogues it runs. `--base-url` given more than once names replicas of the
same server: each model is then a `ModelPool` over them (a dialogue stays
on one replica, new dialogues go to the least loaded, a failed replica is
taken out, at most `--max-in-flight` requests per replica at once). The API key is read from the environment in the process
that uses it (`--api-key-env`, default `OPENAI_API_KEY`) and never stored in
a factory, so it is never pickled, printed or written.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, TypeAlias, TypeVar
from urllib.parse import urlsplit

from convo_sim._errors import InputError
from convo_sim._models import ModelSettings

if TYPE_CHECKING:  # kept light: `convo-sim --help` imports this module
    from convo_sim._actors import Actor
    from convo_sim._models import ChatModel
    from convo_sim._pool import ReplicaStats
    from convo_sim.scenarios import CalendarGoal, Scenario

__all__ = [
    "ActorSpec",
    "ActorWiring",
    "ModelEndpoint",
    "OpenAIAssistantFactory",
    "OpenAIUserFactory",
    "add_actor_arguments",
    "check_base_url",
    "describe_goal",
    "llm_assistant_for",
    "llm_user_for",
    "parse_actor_spec",
    "wire_actors",
]

P = ParamSpec("P")
T = TypeVar("T")
ActorFactory: TypeAlias = "Callable[[Scenario, int], Actor]"


@dataclass(frozen=True, slots=True)
class ActorSpec:
    """A parsed `--assistant` / `--user` value."""

    kind: Literal["builtin", "openai"]
    model: str | None = None


def parse_actor_spec(text: str, *, flag: str) -> ActorSpec:
    """Read `builtin` or `openai:MODEL`.

    Raises:
        InputError: anything else, naming the flag and the accepted forms.
    """
    value = text.strip()
    if value == "builtin":
        return ActorSpec("builtin")
    kind, sep, model = value.partition(":")
    if kind == "openai" and sep and model.strip():
        return ActorSpec("openai", model.strip())
    raise InputError(
        f"{flag} {text!r}: expected 'builtin' or 'openai:MODEL' (e.g. openai:gpt-4o-mini)"
    )


def add_actor_arguments(parser: argparse.ArgumentParser) -> None:
    """Add `--assistant`, `--user`, `--base-url`, `--max-in-flight`, `--api-key-env`, `--model-api`."""
    from convo_sim.cli.run import _positive

    for side in ("assistant", "user"):
        parser.add_argument(
            f"--{side}",
            metavar="SPEC",
            default="builtin",
            help=f"the {side}: 'builtin' (rule-based, default) or 'openai:MODEL' "
            "(any OpenAI-compatible API)",
        )
    parser.add_argument(
        "--base-url",
        metavar="URL",
        action="append",
        default=None,
        help="API root for openai: actors, e.g. http://localhost:8000/v1 for vLLM or "
        "convo-sim serve (default: $OPENAI_BASE_URL, else OpenAI); repeat it for replicas "
        "of one server: each dialogue stays on one, new ones go to the least loaded",
    )
    parser.add_argument(
        "--max-in-flight",
        metavar="N",
        type=_positive,
        default=256,
        help="with several --base-url: requests at once per replica; the rest wait (default: 256)",
    )
    parser.add_argument(
        "--api-key-env",
        metavar="NAME",
        default="OPENAI_API_KEY",
        help="environment variable holding the API key (default: OPENAI_API_KEY; "
        "local servers need none)",
    )
    parser.add_argument(
        "--model-api",
        choices=["chat", "responses"],
        default="chat",
        help="OpenAI API for openai: actors: chat completions or the Responses API (default: chat)",
    )


def check_base_url(url: str) -> str:
    """`url` if it is an http(s) URL with a host (and a valid port, if any).

    Raises:
        InputError: anything else, naming the flag and the expected form.
    """
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises for a port that is no number or out of range
    except ValueError:  # a malformed IPv6 host or port
        parts = None
    spaced = any(c.isspace() or not c.isprintable() for c in url)
    if parts is None or spaced or parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError(
            f"--base-url {url!r}: expected an http(s) URL with a host and an optional "
            "port, such as http://127.0.0.1:8000/v1"
        )
    return url


@dataclass(frozen=True)
class ModelEndpoint:
    """Where and how to reach a model; holds the key's variable name, never the key.

    `replicas`: two or more API roots serving the same model; the model is
    then a `ModelPool` over them, with `max_in_flight` requests per replica.
    """

    model: str
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    api: Literal["chat", "responses"] = "chat"
    timeout: float = 60.0
    replicas: tuple[str, ...] = ()
    max_in_flight: int = 256


@dataclass
class _SharedModel:
    """One `OpenAIChatModel` per endpoint and process, made on first use."""

    endpoint: ModelEndpoint
    _model: Any = field(default=None, repr=False)
    _stats: tuple[ReplicaStats, ...] = field(default=(), repr=False)

    def get(self) -> Any:
        if self._model is None:
            from convo_sim._openai_model import LOCAL_API_KEY, OpenAIChatModel

            endpoint = self.endpoint
            # Only the named variable: falling back to another key could send
            # it to a server it was not meant for.
            key = os.environ.get(endpoint.api_key_env) or LOCAL_API_KEY
            models = [
                OpenAIChatModel(
                    endpoint.model,
                    base_url=url,
                    api_key=key,
                    api=endpoint.api,
                    timeout=endpoint.timeout,
                    api_key_env=endpoint.api_key_env,
                )
                for url in endpoint.replicas or (endpoint.base_url,)
            ]
            if len(models) == 1:
                self._model = models[0]
            else:
                from convo_sim._pool import ModelPool

                self._model = ModelPool(models, max_in_flight=endpoint.max_in_flight)
        return self._model

    def replica_stats(self) -> tuple[ReplicaStats, ...]:
        """The pool's counts per replica, if this process built a pool (kept after closing)."""
        from convo_sim._pool import ModelPool

        return self._model.stats() if isinstance(self._model, ModelPool) else self._stats

    async def aclose(self) -> None:
        self._stats = self.replica_stats()  # the summary reports them after the run
        model, self._model = self._model, None
        if model is not None:
            await model.aclose()

    def __getstate__(self) -> dict[str, Any]:
        # A worker process opens its own connection pool.
        return {"endpoint": self.endpoint}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.endpoint = state["endpoint"]
        self._model = None
        self._stats = ()


def llm_assistant_for(model: ChatModel, scenario: Scenario, seed: int) -> Actor:
    """The LLM assistant of one sample of `scenario`."""
    from convo_sim.agents import LLMAssistant

    return LLMAssistant(
        model, system_prompt=scenario.system_prompt, settings=ModelSettings(seed=seed)
    )


def llm_user_for(model: ChatModel, scenario: Scenario, seed: int) -> Actor:
    """The LLM user of one sample of `scenario`, pursuing its goal.

    The prompt carries the goal in words and, as a scenario card, as data
    (id, goal, persona, user script and the sample's user seed, mixed as the
    built-in user mixes it), so `convo-sim serve`'s `calendar-user` rebuilds
    exactly the user the built-in run would have used.
    """
    from convo_sim.users import LLMUser

    user_seed = seed ^ scenario.seed
    card = {
        "id": scenario.id,
        "goal": scenario.goal.model_dump(mode="json") if scenario.goal else None,
        "persona": scenario.persona,
        "seed": user_seed,
        "user_script": list(scenario.user_script),
    }
    return LLMUser(
        model,
        goal=describe_goal(scenario),
        persona=scenario.persona,  # a bundled persona's name becomes its instructions
        settings=ModelSettings(seed=user_seed),
        scenario_card=card,
    )


@dataclass
class OpenAIAssistantFactory:
    """`(scenario, seed) -> LLMAssistant` over one shared model."""

    shared: _SharedModel

    def __call__(self, scenario: Scenario, seed: int) -> Actor:
        return llm_assistant_for(self.shared.get(), scenario, seed)


@dataclass
class OpenAIUserFactory:
    """`(scenario, seed) -> LLMUser` over one shared model (see `llm_user_for`)."""

    shared: _SharedModel

    def __call__(self, scenario: Scenario, seed: int) -> Actor:
        return llm_user_for(self.shared.get(), scenario, seed)


def describe_goal(scenario: Scenario) -> str:
    """The user's goal in words, for an LLM user's prompt."""
    if scenario.goal is not None:
        return _describe_calendar_goal(scenario.goal)
    if scenario.user_script:
        lines = "\n".join(f"{i}. {text}" for i, text in enumerate(scenario.user_script, 1))
        return f"Say these messages, in this order, one per turn:\n{lines}"
    return "You have nothing to ask for: end the conversation at once."


def _describe_calendar_goal(goal: CalendarGoal) -> str:
    names: dict[int, str] = {}
    lines: list[str] = []
    for step in goal.steps:
        if step.action == "add":
            names[step.event_id] = step.name or f"event {step.event_id}"
            what = (
                f'Add "{names[step.event_id]}" (event id {step.event_id}), {step.duration} minutes'
            )
            lines.append(what + (f", {step.constraint}." if step.constraint else "."))
        else:
            name = names.get(step.event_id, f"event {step.event_id}")
            lines.append(f'"{name}" (event id {step.event_id}) must be {step.constraint}.')
    numbered = "\n".join(f"{i}. {line}" for i, line in enumerate(lines, 1))
    return (
        f"You want these events in your calendar for one working day "
        f"({goal.min_time} to {goal.max_time}), asked for in this order:\n{numbered}\n"
        "Always mention the event id. Check every calendar the assistant shows against "
        "what you asked for so far."
    )


@dataclass
class ActorWiring:
    """The assistant and user factories of a run, and the models they share."""

    assistant: ActorFactory
    user: ActorFactory
    models: list[_SharedModel] = field(default_factory=list)

    async def aclose(self) -> None:
        """Close the connection pools this process opened."""
        for shared in self.models:
            await shared.aclose()

    def replica_stats(self) -> list[ReplicaStats]:
        """Counts per replica over every model pool this process built, summed by replica.

        Empty when no model has replicas (or they run in other processes,
        as with Ray).
        """
        from convo_sim._pool import merge_stats

        return merge_stats(s for shared in self.models for s in shared.replica_stats())

    def closing(self, fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
        """Wrap the run's coroutine function so the pools close when it ends."""

        async def run(*args: P.args, **kwargs: P.kwargs) -> T:
            try:
                return await fn(*args, **kwargs)
            finally:
                await self.aclose()

        return run


def wire_actors(
    args: argparse.Namespace,
    *,
    builtin_assistant: ActorFactory,
    builtin_user: ActorFactory,
) -> ActorWiring:
    """The factories `--assistant`/`--user` ask for (the built-ins by default).

    Raises:
        InputError: a spec is malformed, or `--api-key-env` names an unset
            variable (for OpenAI itself; a `--base-url` server may need none).
    """
    assistant = parse_actor_spec(getattr(args, "assistant", "builtin"), flag="--assistant")
    user = parse_actor_spec(getattr(args, "user", "builtin"), flag="--user")
    given = getattr(args, "base_url", None)  # a list from the parser; one URL from callers
    base_urls = [
        check_base_url(url) for url in ([given] if isinstance(given, str) else given or ())
    ]
    base_url = base_urls[0] if base_urls else None
    replicas = tuple(base_urls) if len(base_urls) > 1 else ()
    max_in_flight = getattr(args, "max_in_flight", 256)
    key_env = getattr(args, "api_key_env", "OPENAI_API_KEY")
    api: Literal["chat", "responses"] = getattr(args, "model_api", "chat")
    openai_specs = [s for s in (assistant, user) if s.kind == "openai"]
    local = base_url or os.environ.get("OPENAI_BASE_URL")
    if openai_specs and not local and not os.environ.get(key_env):
        raise InputError(
            f"openai:{openai_specs[0].model} needs an API key in ${key_env} "
            "(or --base-url for a local server such as vLLM or convo-sim serve)"
        )
    wiring = ActorWiring(builtin_assistant, builtin_user)
    shared: dict[str, _SharedModel] = {}

    def model_for(spec: ActorSpec) -> _SharedModel:
        assert spec.model is not None
        if spec.model not in shared:
            endpoint = ModelEndpoint(
                spec.model,
                base_url,
                key_env,
                api,
                replicas=replicas,
                max_in_flight=max_in_flight,
            )
            shared[spec.model] = _SharedModel(endpoint)
            wiring.models.append(shared[spec.model])
        return shared[spec.model]

    if assistant.kind == "openai":
        wiring.assistant = OpenAIAssistantFactory(model_for(assistant))
    if user.kind == "openai":
        wiring.user = OpenAIUserFactory(model_for(user))
    return wiring
