"""convo-sim as a PrimeIntellect verifiers `MultiTurnEnv` (verifiers >=0.2,<0.4).

verifiers' own rollout loop (`env.evaluate`, `env.generate`, prime-rl's
trainer) calls the policy model; after each model turn it asks
`env_response(messages, state)` for the environment's answer and stops on
`state["final_env_response"]` (verifiers 0.3.1,
`legacy/envs/multiturn_env.py`; 0.2.x `envs/multiturn_env.py`). Here the
answer is convo-sim's simulated user, through a `DialogueEnv` per rollout:
`setup_state` lets the user speak first, each `env_response` hands the
model's message (and the token ids verifiers parsed from the response, when
the sampling args ask for them) to `step`, and the rubric's reward is the
dialogue's::

    from convo_sim.integrations.verifiers import DialogueMultiTurnEnv
    env = DialogueMultiTurnEnv(scenarios)             # dataset and rubric built in
    results = await env.evaluate(client, "my-model")  # verifiers' own loop

verifiers 0.4 replaced `MultiTurnEnv` with its `v1` stack; see
docs/integrations.md. Needs the `verifiers` extra.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from datasets import Dataset

import verifiers as vf

if not hasattr(vf, "MultiTurnEnv"):  # pragma: no cover - depends on the install
    raise ImportError(
        f"the 'verifiers' package found ({vf.__file__}) has no MultiTurnEnv: install "
        "'convo-sim[verifiers]' (verifiers>=0.2,<0.4), and run from outside convo-sim's "
        "source tree, whose verifiers/ folder shadows it"
    )

from convo_sim._env import DialogueEnv
from convo_sim._messages import TOKEN_FIELDS, Message
from convo_sim._results import DialogueResult
from convo_sim.domains._domain import Domain
from convo_sim.integrations._common import (
    result_summary,
    scenario_spec,
    start_of,
    step_info,
)

__all__ = ["DialogueMultiTurnEnv", "dialogue_dataset", "dialogue_reward"]

# verifiers' token fields -> convo-sim's (TOKEN_FIELDS order).
_TOKENS = dict(
    zip(("prompt_ids", "completion_ids", "completion_logprobs"), TOKEN_FIELDS, strict=True)
)
_ENV = "convo_sim_env"
_RESULT = "convo_sim_result"


def dialogue_dataset(
    scenarios: Iterable[Any], *, domain: str | Domain[Any] = "calendar", seed: int = 0
) -> Dataset:
    """A verifiers dataset: `prompt` (the opening) and the scenario in `info`."""
    return Dataset.from_list(
        [
            {
                "prompt": scenario.opening_transcript().to_openai(),
                # JSON text: scenarios differ in shape, Arrow columns may not.
                "info": {"convo_sim": json.dumps(scenario_spec(scenario, domain, seed))},
                "answer": "",
            }
            for scenario in scenarios
        ]
    )


async def dialogue_reward(state: Mapping[str, Any], **_: Any) -> float:
    """The rubric function: the dialogue's reward (0.0 when nothing scored it)."""
    result = state.get(_RESULT)
    if result is None:
        env = state.get(_ENV)
        if env is None:
            return 0.0
        result = await env.result()
    assert isinstance(result, DialogueResult)
    return result.reward or 0.0


class DialogueMultiTurnEnv(vf.MultiTurnEnv):  # type: ignore[misc]
    """convo-sim's simulated user and verifiers as a verifiers `MultiTurnEnv`.

    Args:
        scenarios: the scenarios to run (the dataset and eval dataset);
            None when `dataset`/`eval_dataset` are given (`dialogue_dataset`).
        domain: their domain.
        seed: the sample seed the simulated user is built with.
        env_options: `DialogueEnv` options (`max_turns`, `turn_timeout`, ...).
        **kwargs: `MultiTurnEnv`'s (`rubric`, `max_turns`, ...); the rubric
            defaults to the dialogue's reward, the turn limit to the dialogue's.
    """

    def __init__(
        self,
        scenarios: Iterable[Any] | None = None,
        *,
        domain: str | Domain[Any] = "calendar",
        seed: int = 0,
        env_options: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if scenarios is not None:
            data = dialogue_dataset(list(scenarios), domain=domain, seed=seed)
            kwargs.setdefault("dataset", data)
            kwargs.setdefault("eval_dataset", data)
        kwargs.setdefault("rubric", vf.Rubric(funcs=[dialogue_reward], weights=[1.0]))
        super().__init__(**kwargs)
        self.convo_sim_domain = domain
        self.env_options = dict(env_options or {})

    async def setup_state(self, state: Any) -> Any:
        """Start the dialogue: the prompt becomes the opening and the user's first words."""
        spec = (state.get("info") or {}).get("convo_sim")
        domain, scenario, seed = start_of(
            json.loads(spec) if isinstance(spec, str) else spec, self.convo_sim_domain
        )
        env: DialogueEnv[Any] = DialogueEnv(domain, **self.env_options)
        view = await env.reset(scenario, seed)
        state[_ENV] = env
        state["prompt"] = [m.to_openai() for m in view.messages]
        if env.done:
            state[_RESULT] = await env.result()
            state["final_env_response"] = []
        return state

    async def env_response(self, messages: Any, state: Any, **kwargs: Any) -> Any:
        """The simulated user's answer to the model's last message."""
        env: DialogueEnv[Any] = state[_ENV]
        last = messages[-1] if messages else {}
        content = last.get("content") if isinstance(last, Mapping) else getattr(last, "content", "")
        tokens: dict[str, Any] = {}
        trajectory = state.get("trajectory") or []
        step_tokens = trajectory[-1].get("tokens") if trajectory else None
        if isinstance(step_tokens, Mapping) and all(k in step_tokens for k in _TOKENS):
            tokens = {ours: step_tokens[theirs] for theirs, ours in _TOKENS.items()}
        taken = await env.step(
            Message(
                role="assistant",
                content=content if isinstance(content, str) else "",
                metadata=tokens,
            )
        )
        reply = [
            vf.UserMessage(content=m.text) for m in taken.info["new_messages"] if m.role == "user"
        ]
        state.setdefault("convo_sim_steps", []).append(step_info(taken))
        if taken.info["result"] is not None:
            state[_RESULT] = taken.info["result"]
            summary = result_summary(taken.info["result"])
            # With token capture: do the policy's turns form one token sequence?
            contiguity = (await env.rollout()).contiguity
            summary["contiguity"] = None if contiguity is None else contiguity.model_dump()
            state["convo_sim"] = summary
            state["final_env_response"] = reply
        return reply
