"""Which actors `convo-sim run` uses: `--assistant` / `--user` specs, as rollout factories.

A spec is `builtin` (the domain's rule-based actors, the default) or
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
    from convo_sim.scenarios import Scenario

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
    "require_endpoint",
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
    """Add the flags that choose the actors, their endpoints and token capture.

    `--assistant`, `--user`, `--base-url` (repeated: replicas of one model),
    `--max-in-flight`, `--api-key-env`, `--model-api`; per side
    `--assistant-base-url`, `--user-base-url`, `--assistant-api-key-env`,
    `--user-api-key-env` (the policy and the simulated user on separate
    servers and keys); `--capture-tokens`.
    """
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
    for side in ("assistant", "user"):
        parser.add_argument(
            f"--{side}-base-url",
            metavar="URL",
            default=None,
            help=f"API root for the {side} alone (default: --base-url)",
        )
        parser.add_argument(
            f"--{side}-api-key-env",
            metavar="NAME",
            default=None,
            help=f"environment variable holding the {side}'s API key (default: --api-key-env)",
        )
    parser.add_argument(
        "--capture-tokens",
        action="store_true",
        help="record the assistant's (the policy's) token ids and logprobs on every turn, "
        "kept on-policy across turns (needs --assistant openai:MODEL and chat completions; "
        "see docs/training-data.md)",
    )


def require_endpoint(model: str, url: str | None, key_env: str, *, flag: str) -> None:
    """Refuse, before any dialogue runs, a model with neither a server nor a key.

    Raises:
        InputError: no `url`, no `$OPENAI_BASE_URL` and no key in `$key_env`.
    """
    if not (url or os.environ.get("OPENAI_BASE_URL")) and not os.environ.get(key_env):
        raise InputError(
            f"openai:{model} needs an API key in ${key_env} "
            f"(or {flag} for a local server such as vLLM or convo-sim serve)"
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
    capture_tokens: bool = False
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
                    capture_tokens=endpoint.capture_tokens,
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


def llm_user_for(
    model: ChatModel, scenario: Scenario, seed: int, *, domain: str = "calendar"
) -> Actor:
    """The LLM user of one sample of `scenario`, pursuing its goal.

    The prompt carries the goal in words and, as the domain's scenario card,
    as data (for the calendar: id, goal, persona, user script and the
    sample's user seed, `user_seed(scenario, seed)`), so `convo-sim serve`'s
    `calendar-user` rebuilds exactly the user the built-in run would have used.
    """
    from convo_sim.domains import get
    from convo_sim.scenarios import user_seed
    from convo_sim.users import LLMUser, Persona, scenario_persona

    chosen = get(domain)
    persona: Persona | str | None
    try:
        # A bundled or sampled persona becomes its instructions (`persona_prompt`).
        persona = scenario_persona(scenario)
    except InputError:
        persona = scenario.persona  # not a persona convo-sim knows: free text
    return LLMUser(
        model,
        goal=describe_goal(scenario, domain=domain),
        persona=persona,
        settings=ModelSettings(seed=user_seed(scenario, seed)),
        scenario_card=chosen.card(scenario, seed) if chosen.card else None,
    )


@dataclass
class OpenAIAssistantFactory:
    """`(scenario, seed) -> LLMAssistant` over one shared model."""

    shared: _SharedModel

    def __call__(self, scenario: Scenario, seed: int) -> Actor:
        return llm_assistant_for(self.shared.get(), scenario, seed)


@dataclass
class OpenAIUserFactory:
    """`(scenario, seed) -> LLMUser` over one shared model (see `llm_user_for`).

    Holds the domain's name, not the domain, so that it pickles small.
    """

    shared: _SharedModel
    domain: str = "calendar"

    def __call__(self, scenario: Scenario, seed: int) -> Actor:
        return llm_user_for(self.shared.get(), scenario, seed, domain=self.domain)


def describe_goal(scenario: Scenario, *, domain: str = "calendar") -> str:
    """The user's goal in words, for an LLM user's prompt: the domain's, else its script."""
    from convo_sim.domains import get

    describe = get(domain).describe_goal
    text = describe(scenario) if describe is not None else None
    if text is not None:
        return text
    if scenario.user_script:
        lines = "\n".join(f"{i}. {text}" for i, text in enumerate(scenario.user_script, 1))
        return f"Say these messages, in this order, one per turn:\n{lines}"
    return "You have nothing to ask for: end the conversation at once."


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
        InputError: a spec is malformed, `--api-key-env` (or a side's own)
            names an unset variable (for OpenAI itself; a `--base-url` server
            may need none), or `--capture-tokens` lacks an `openai:` assistant
            on chat completions.
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
    capture = bool(getattr(args, "capture_tokens", False))
    if capture and assistant.kind != "openai":
        raise InputError(
            "--capture-tokens records the policy's tokens: it needs --assistant openai:MODEL"
        )
    if capture and api != "chat":
        raise InputError("--capture-tokens needs chat completions (--model-api chat)")
    wiring = ActorWiring(builtin_assistant, builtin_user)
    shared: dict[ModelEndpoint, _SharedModel] = {}

    def model_for(spec: ActorSpec, side: str) -> _SharedModel:
        assert spec.model is not None
        own_url = getattr(args, f"{side}_base_url", None)
        url = own_url or base_url
        env = getattr(args, f"{side}_api_key_env", None) or key_env
        require_endpoint(spec.model, url, env, flag=f"--{side}-base-url / --base-url")
        # Only the assistant is the policy: the simulated user's tokens are
        # never captured, and a side with its own endpoint gets its own model
        # (the replicas of --base-url serve only the sides without one).
        endpoint = ModelEndpoint(
            spec.model,
            url,
            env,
            api,
            capture_tokens=capture and side == "assistant",
            replicas=() if own_url else replicas,
            max_in_flight=max_in_flight,
        )
        if endpoint not in shared:
            shared[endpoint] = _SharedModel(endpoint)
            wiring.models.append(shared[endpoint])
        return shared[endpoint]

    if assistant.kind == "openai":
        wiring.assistant = OpenAIAssistantFactory(model_for(assistant, "assistant"))
    if user.kind == "openai":
        from convo_sim.cli.domain import domain_name

        wiring.user = OpenAIUserFactory(model_for(user, "user"), domain_name(args))
    return wiring
