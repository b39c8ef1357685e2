"""convo-sim as a NeMo-Gym resources server: the simulated user and verifiers over HTTP.

NeMo-Gym (0.2-0.4 need Python 3.12, 0.5+ 3.13.14) and convo-sim (3.11+)
meet over HTTP: this server runs in convo-sim's environment and speaks the
protocol of NeMo-Gym's gymnasium-style resources servers, which its
`gymnasium_agent` drives (nemo-gym 0.4.0, `resources_servers/gymnasium`;
0.7.0 keeps it and adds `/close`):

- `GET /`: liveness (NeMo-Gym polls it while starting servers).
- `POST /reset`: the dataset row; the simulated user speaks first. Answers
  `{"observation": <the user's message>, "info": {...}}`.
- `POST /step`: the row plus `response`, the policy's Responses-API output.
  Its assistant text is the dialogue's next message and the token fields
  NeMo-Gym's `vllm_model` attaches to the last output item
  (`prompt_token_ids`, `generation_token_ids`, `generation_log_probs`) ride
  along into the record. Answers `{observation, reward, terminated,
  truncated, info}`: the user's answer, 0 until the end, then the
  dialogue's reward (`gymnasium_agent` sums the steps' rewards).
- `POST /close`: drops the session (0.7.0 calls it when `/reset`'s info
  says `supports_explicit_close`).
- `POST /seed_session` and `POST /verify`: NeMo-Gym's plain resources
  protocol (`simple_agent`), for single-reply scenarios: the response is
  the assistant's one message, graded by the verifiers.
- `POST /aggregate_metrics`: mean reward and the endings.

A session is a cookie the server sets again on every answer (NeMo-Gym
0.4.0 forwards only the previous answer's cookies). A row names its
scenario in a `convo_sim` field (`nemo_gym_rows` writes such rows); its
`responses_create_params.input` is the scenario's opening (the system
prompt), which NeMo-Gym sends to the policy before the user's messages.

Run it from NeMo-Gym's config (see scenarios/examples/nemo_gym/) or as
`python -m convo_sim.integrations.nemo_gym serve --port 8100`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiohttp import web

from convo_sim._env import DialogueEnv
from convo_sim._errors import InputError
from convo_sim._logging import get_logger
from convo_sim._messages import Message
from convo_sim.domains._domain import Domain
from convo_sim.domains._registry import resolve
from convo_sim.integrations._common import (
    result_summary,
    scenario_spec,
    start_of,
    step_info,
    token_metadata,
    user_text,
)

__all__ = ["COOKIE", "main", "nemo_gym_app", "nemo_gym_rows", "response_message", "serve_nemo_gym"]

COOKIE = "convo_sim_session"
"""The session cookie's name."""

_log = get_logger("convo_sim.nemo_gym")
# Rows carry whole dialogues, with token ids on every assistant item.
_MAX_BODY = 64 * 1024 * 1024


def nemo_gym_rows(
    scenarios: Iterable[Any],
    *,
    domain: str | Domain[Any] = "calendar",
    agent: str = "convo_sim_agent",
    seed: int = 0,
) -> list[dict[str, Any]]:
    """NeMo-Gym dataset rows (JSONL objects) for scenarios, one per scenario.

    Args:
        scenarios: the domain's scenarios.
        domain: their domain (its name goes in the row).
        agent: the agent server instance the rows are for (`agent_ref`).
        seed: the sample seed the simulated user is built with.
    """
    rows = []
    for scenario in scenarios:
        extra = dict(getattr(scenario, "metadata", {}).get("responses_create_params") or {})
        rows.append(
            {
                "responses_create_params": {
                    **extra,
                    "input": scenario.opening_transcript().to_responses_input(),
                },
                "agent_ref": {"type": "responses_api_agents", "name": agent},
                "convo_sim": scenario_spec(scenario, domain, seed),
            }
        )
    return rows


def response_message(response: Mapping[str, Any]) -> Message:
    """The assistant's message in a Responses-API response (NeMo-Gym's `response`).

    The text is every assistant `output_text` of the output; the token fields
    are the last output item's that has them all (NeMo-Gym puts them on
    the last item of each model call).

    Raises:
        ValueError: the response has no `output` list.
    """
    output = response.get("output")
    if not isinstance(output, list):
        raise ValueError("'response' must have an 'output' list (a Responses-API response)")
    texts: list[str] = []
    tokens: dict[str, Any] = {}
    for item in output:
        if not isinstance(item, Mapping):
            continue
        tokens = token_metadata(item) or tokens
        if item.get("type", "message") != "message" or item.get("role") != "assistant":
            continue
        content = item.get("content")
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts += [
                str(part.get("text", ""))
                for part in content
                if isinstance(part, Mapping) and part.get("type") == "output_text"
            ]
    return Message(role="assistant", content="".join(texts), metadata=tokens)


class _Sessions:
    """The open dialogues, the oldest dropped past `limit` (a client that never finishes)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._envs: OrderedDict[str, DialogueEnv[Any]] = OrderedDict()

    def open(self, env: DialogueEnv[Any]) -> str:
        key = uuid.uuid4().hex
        self._envs[key] = env
        while len(self._envs) > self.limit:
            self._envs.popitem(last=False)
        return key

    def get(self, key: str | None) -> DialogueEnv[Any] | None:
        return None if key is None else self._envs.get(key)

    def close(self, key: str | None) -> None:
        if key is not None:
            self._envs.pop(key, None)


class _Bad(Exception):
    """A request this server cannot use: answered 400 with the reason."""


def nemo_gym_app(
    domain: str | Domain[Any] = "calendar",
    *,
    max_sessions: int = 4096,
    **env_options: Any,
) -> web.Application:
    """The aiohttp application serving NeMo-Gym's protocol for one domain.

    Args:
        domain: the default domain (a row may name another in `convo_sim.domain`).
        max_sessions: open dialogues kept at most; the oldest is dropped first.
        **env_options: `DialogueEnv` options (`max_turns`, `turn_timeout`, ...).

    Raises:
        UnknownDomainError: no domain has that name.
    """
    default = resolve(domain)
    sessions = _Sessions(max_sessions)

    async def start(row: Mapping[str, Any]) -> tuple[DialogueEnv[Any], Any]:
        try:
            dom, scenario, seed = start_of(row.get("convo_sim"), default)
        except ValueError as exc:
            raise _Bad(str(exc)) from None
        env: DialogueEnv[Any] = DialogueEnv(dom, **env_options)
        await env.reset(scenario, seed)
        return env, scenario

    async def body_of(request: web.Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError:
            raise _Bad("the body is not JSON") from None
        if not isinstance(body, dict):
            raise _Bad("the body must be a JSON object")
        return body

    def policy_message(body: Mapping[str, Any]) -> Message:
        response = body.get("response")
        if not isinstance(response, Mapping):
            raise _Bad("the body has no 'response' object (the policy's Responses-API output)")
        try:
            return response_message(response)
        except ValueError as exc:
            raise _Bad(str(exc)) from None

    def answer(data: Mapping[str, Any], key: str | None, status: int = 200) -> web.Response:
        reply = web.json_response(data, status=status)
        if key is not None:
            reply.set_cookie(COOKIE, key, httponly=True, samesite="Lax")
        return reply

    async def live(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "domain": default.name})

    async def reset(request: web.Request) -> web.Response:
        row = await body_of(request)
        sessions.close(request.cookies.get(COOKIE))
        env, scenario = await start(row)
        key = sessions.open(env)
        opening = len(scenario.opening_transcript())
        observation = user_text(env.transcript.messages[opening:])
        info: dict[str, Any] = {"supports_explicit_close": True, "turn": 0, "done": env.done}
        return answer({"observation": observation, "info": info}, key)

    async def step(request: web.Request) -> web.Response:
        body = await body_of(request)
        key = request.cookies.get(COOKIE)
        env = sessions.get(key)
        if env is None:
            return answer(
                {"error": "no open dialogue for this session: POST /reset first"}, None, 409
            )
        message = policy_message(body)
        if env.done:
            # The user ended the dialogue before the policy spoke.
            result = await env.result()
            sessions.close(key)
            info = {"turn": result.turns, "result": result_summary(result)}
            data = {"observation": None, "reward": result.reward or 0.0, "terminated": True}
            return answer({**data, "truncated": False, "info": info}, key)
        try:
            taken = await env.step(message)
        except RuntimeError as exc:  # a step of this session already in progress
            return answer({"error": str(exc)}, key, 409)
        info = step_info(taken)
        if env.done:
            sessions.close(key)
            # With token capture, whether the policy's turns form one token
            # sequence (NeMo-RL's requirement), checked on convo-sim's record.
            record = await env.rollout()
            if record.contiguity is not None:
                info["contiguity"] = record.contiguity.model_dump(mode="json")
        observation = None if env.done else user_text(taken.info["new_messages"])
        return answer(
            {
                "observation": observation,
                "reward": taken.reward,
                "terminated": taken.terminated,
                "truncated": taken.truncated,
                "info": info,
            },
            key,
        )

    async def close(request: web.Request) -> web.Response:
        sessions.close(request.cookies.get(COOKIE))
        return web.json_response({})

    async def seed_session(request: web.Request) -> web.Response:
        return web.json_response({})

    async def verify(request: web.Request) -> web.Response:
        body = await body_of(request)
        message = policy_message(body)
        env, _ = await start(body)
        if not env.done:
            await env.step(message)
        result = await env.result()
        return web.json_response(
            {**body, "reward": result.reward or 0.0, "convo_sim_result": result_summary(result)}
        )

    async def aggregate(request: web.Request) -> web.Response:
        body = await body_of(request)
        rows = body.get("verify_responses")
        rows = rows if isinstance(rows, list) else []
        rewards = [float(r.get("reward") or 0.0) for r in rows if isinstance(r, Mapping)]
        mean = sum(rewards) / len(rewards) if rewards else 0.0
        metrics: dict[str, Any] = {"mean/reward": mean, "rollouts": len(rewards)}
        return web.json_response(
            {
                "group_level_metrics": [],
                "agent_metrics": metrics,
                "key_metrics": {"mean/reward": mean},
            }
        )

    @web.middleware
    async def errors(request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            reply: web.StreamResponse = await handler(request)
        except _Bad as bad:
            reply = web.json_response({"error": str(bad)}, status=400)
        except web.HTTPException:
            raise
        except Exception as exc:
            # One bad dialogue (a crashing detector, say) never stops the others.
            _log.exception("nemo_gym.request_failed", path=request.path)
            reply = web.json_response({"error": f"{type(exc).__name__}: {exc}"}, status=500)
        else:
            return reply
        # NeMo-Gym 0.4.0 forwards only the last answer's cookies: an error
        # must not lose the session.
        key = request.cookies.get(COOKIE)
        if key is not None:
            reply.set_cookie(COOKIE, key, httponly=True, samesite="Lax")
        return reply

    app = web.Application(middlewares=[errors], client_max_size=_MAX_BODY)
    app.router.add_get("/", live)
    for path, handler in {
        "/reset": reset,
        "/step": step,
        "/close": close,
        "/seed_session": seed_session,
        "/verify": verify,
        "/aggregate_metrics": aggregate,
    }.items():
        app.router.add_post(path, handler)
    return app


@asynccontextmanager
async def serve_nemo_gym(
    domain: str | Domain[Any] = "calendar",
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    **options: Any,
) -> AsyncIterator[str]:
    """Serve `nemo_gym_app` in the current (asyncio) event loop; yields its base URL.

    Raises:
        OSError: the port cannot be bound.
        UnknownDomainError: no domain has that name.
    """
    runner = web.AppRunner(nemo_gym_app(domain, **options), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0][1]
        yield f"http://{host}:{bound}"
    finally:
        await runner.cleanup()


def _under_nemo_gym() -> tuple[str, int, dict[str, Any]] | None:
    """Host, port and options from NeMo-Gym's environment, when NeMo-Gym started us."""
    raw, name = os.environ.get("NEMO_GYM_CONFIG_DICT"), os.environ.get("NEMO_GYM_CONFIG_PATH")
    if not raw or not name:
        return None
    import yaml  # the nemo-gym extra; NeMo-Gym hands its config over as YAML

    config = yaml.safe_load(raw)
    servers = config[name]["resources_servers"]
    (mine,) = servers.values()
    # `domain` is NeMo-Gym's own category field; ours is `convo_sim_domain`.
    options = {k: mine[k] for k in ("max_turns", "turn_timeout") if mine.get(k)}
    if mine.get("convo_sim_domain"):
        options["domain"] = mine["convo_sim_domain"]
    return str(mine["host"]), int(mine["port"]), options


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m convo_sim.integrations.nemo_gym serve|rows ...`.

    With no arguments under NeMo-Gym (its config in the environment), serves
    on the host and port NeMo-Gym assigned.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    nemo = _under_nemo_gym() if not args else None
    if nemo is not None:
        host, port, options = nemo
        web.run_app(nemo_gym_app(**options), host=host, port=port, print=None, access_log=None)
        return 0
    parser = argparse.ArgumentParser(prog="python -m convo_sim.integrations.nemo_gym")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve NeMo-Gym's resources-server protocol")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8100)
    serve.add_argument("--domain", default="calendar")
    rows = sub.add_parser("rows", help="write NeMo-Gym dataset rows (JSONL) to stdout")
    rows.add_argument("--domain", default="calendar")
    rows.add_argument("--set", action="append", help="a bundled scenario set (repeatable)")
    rows.add_argument("--scenarios", help="a scenario file the domain reads")
    rows.add_argument("--agent", default="convo_sim_agent")
    rows.add_argument("--seed", type=int, default=0)
    ns = parser.parse_args(args)
    try:
        domain = resolve(ns.domain)
        if ns.command == "rows":
            scenarios = (
                domain.load(Path(ns.scenarios)) if ns.scenarios else domain.scenarios(ns.set)
            )
    except (InputError, OSError, KeyError, ValueError) as exc:
        print(f"error: {exc}".splitlines()[0], file=sys.stderr)
        return 2
    if ns.command == "serve":
        web.run_app(nemo_gym_app(domain), host=ns.host, port=ns.port, print=None)
        return 0
    for row in nemo_gym_rows(scenarios, domain=domain, agent=ns.agent, seed=ns.seed):
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
