"""Thin adapters to verl's, OpenRLHF's and OpenEnv's documented interfaces.

Their packages pull in torch and CUDA builds (verl, OpenRLHF) or a large web
stack (OpenEnv), so these classes follow the documented signatures without
importing them (the trainers call them by duck typing) and tests check the
contract; docs/integrations.md has each recipe and the sources.

- `VerlInteraction`: verl's `BaseInteraction` (verl <=0.7.1,
  `verl/interactions/base.py`): `start_interaction`, `generate_response ->
  (should_terminate, text, turn_score, extra)`, `calculate_score`,
  `finalize_interaction`.
- `OpenRLHFAgent`: OpenRLHF's `AgentInstanceBase` (openrlhf 0.11.2,
  `openrlhf/utils/agent.py`): `reset(states) -> {"observation"}`,
  `step(states) -> {"rewards", "scores", "environment_feedback", "done", ...}`.
- `OpenEnvDialogue`: an OpenEnv-style environment (openenv-core 0.3.0,
  `Environment.reset(seed, episode_id) / step(action) -> Observation`,
  with `done`, `reward`, `metadata`), for TRL's OpenEnv recipes.

Each dialogue's scenario rides in the dataset row (`trainer_rows`).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, Field

from convo_sim._env import DialogueEnv, EnvStep, SyncDialogueEnv
from convo_sim.domains._domain import Domain
from convo_sim.integrations._common import scenario_spec, start_of, step_info, user_text

__all__ = [
    "DialogueAction",
    "DialogueObservation",
    "OpenEnvDialogue",
    "OpenRLHFAgent",
    "VerlInteraction",
    "trainer_rows",
]


def trainer_rows(
    scenarios: Iterable[Any], *, domain: str | Domain[Any] = "calendar", seed: int = 0
) -> list[dict[str, Any]]:
    """Dataset rows for trainers whose prompt is fixed before the rollout (verl, OpenRLHF, TRL).

    `prompt` is the opening and the simulated user's first message (the
    user is deterministic for a scenario and seed, so the environment's
    `reset` says the same); `convo_sim` names the scenario (as a JSON
    string, which every trainer's dataset keeps as it is).
    """
    rows = []
    for scenario in scenarios:
        spec = scenario_spec(scenario, domain, seed)
        env: SyncDialogueEnv[Any] = SyncDialogueEnv(domain)
        view = env.reset(scenario, seed)
        env.result()
        rows.append(
            {"prompt": [m.to_openai() for m in view.messages], "convo_sim": json.dumps(spec)}
        )
    return rows


def _spec(value: object) -> object:
    return json.loads(value) if isinstance(value, str) else value


def _reward(step: EnvStep) -> float:
    return step.reward if (step.terminated or step.truncated) else 0.0


# ---------------------------------------------------------------- verl


class VerlInteraction:
    """verl's `BaseInteraction` over `DialogueEnv` (one dialogue per `instance_id`).

    Config (verl's `interaction_config_path` YAML, `config:`): `domain`
    and `DialogueEnv` options. Each sample's
    `extra_info.interaction_kwargs` holds `name` and `convo_sim` (the row's).
    """

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.config = dict(config)
        self.name = str(self.config.get("name", "convo_sim"))
        self._options = {k: v for k, v in self.config.items() if k not in ("name", "domain")}
        self._domain = self.config.get("domain", "calendar")
        self._envs: dict[str, DialogueEnv[Any]] = {}

    async def start_interaction(self, instance_id: str | None = None, **kwargs: Any) -> str:
        """Start the dialogue the kwargs' `convo_sim` names; returns the instance id.

        Raises:
            ValueError: the kwargs name no scenario.
        """
        domain, scenario, seed = start_of(_spec(kwargs.get("convo_sim")), self._domain)
        key = instance_id or uuid.uuid4().hex
        env: DialogueEnv[Any] = DialogueEnv(domain, **self._options)
        await env.reset(scenario, seed)
        self._envs[key] = env
        return key

    async def generate_response(
        self, instance_id: str, messages: list[dict[str, Any]], **kwargs: Any
    ) -> tuple[bool, str, float, dict[str, Any]]:
        """The policy's last message in, `(should_terminate, user_text, score, extra)` out.

        Raises:
            KeyError: no dialogue was started for `instance_id`.
        """
        env = self._envs[instance_id]
        if env.done:
            result = await env.result()
            return True, "", result.reward or 0.0, {}
        last: Mapping[str, Any] = next(
            (m for m in reversed(messages) if m.get("role") == "assistant"), {}
        )
        step = await env.step(str(last.get("content") or ""))
        done = step.terminated or step.truncated
        text = "" if done else user_text(step.info["new_messages"]) or ""
        return done, text, _reward(step), step_info(step)

    async def calculate_score(self, instance_id: str | None = None, **kwargs: Any) -> float:
        """The dialogue's reward (a dialogue still going on ends as cancelled)."""
        env = self._envs.get(instance_id or "")
        return 0.0 if env is None else (await env.result()).reward or 0.0

    async def finalize_interaction(self, instance_id: str | None = None, **kwargs: Any) -> None:
        """Forget the dialogue."""
        self._envs.pop(instance_id or "", None)


# ---------------------------------------------------------------- OpenRLHF


class OpenRLHFAgent:
    """OpenRLHF's `AgentInstanceBase` over `DialogueEnv`: text in, feedback text out.

    The sample's `label` is the row's `convo_sim` (JSON). OpenRLHF appends
    `environment_feedback` to the token sequence as it is, so the user's
    message is wrapped in `feedback_template` (set it to the policy's chat
    template for a user turn followed by the assistant's header).
    """

    feedback_template = "\n\nUser: {text}\n\nAssistant: "
    domain: str | Domain[Any] = "calendar"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.env: DialogueEnv[Any] | None = None

    async def reset(self, states: Mapping[str, Any], **kwargs: Any) -> dict[str, Any]:
        """Start the dialogue the label names; the observation is the prompt as given.

        Raises:
            ValueError: the label names no scenario.
        """
        domain, scenario, seed = start_of(_spec(states.get("label")), self.domain)
        self.env = DialogueEnv(domain)
        await self.env.reset(scenario, seed)
        return {"observation": states.get("observation", "")}

    async def step(self, state_dict: Mapping[str, Any], **kwargs: Any) -> dict[str, Any]:
        """The policy's text in; the user's answer as feedback, the reward at the end.

        Raises:
            RuntimeError: `reset` was not called.
        """
        if self.env is None:
            raise RuntimeError("reset() first")
        if self.env.done:
            reward, done, text, info = (await self.env.result()).reward or 0.0, True, None, {}
        else:
            step = await self.env.step(str(state_dict.get("action_text") or ""))
            done = step.terminated or step.truncated
            reward, info = _reward(step), step_info(step)
            text = None if done else user_text(step.info["new_messages"])
        return {
            "rewards": _tensor(reward),
            "scores": _tensor(reward),
            "environment_feedback": ""
            if text is None
            else self.feedback_template.format(text=text),
            "done": done,
            "sampling_params": state_dict.get("sampling_params"),
            "extra_logs": {"turn": info.get("turn", 0)},
        }


def _tensor(value: float) -> Any:
    """A torch scalar when torch is there (OpenRLHF calls `.item()`), else the float."""
    try:
        import torch
    except ImportError:
        return value
    return torch.tensor(value)


# ---------------------------------------------------------------- OpenEnv


class DialogueAction(BaseModel):
    """The policy's message (OpenEnv's `Action`: a `metadata` dict besides)."""

    message: str
    metadata: dict[str, Any] = Field(default_factory=dict)


class DialogueObservation(BaseModel):
    """OpenEnv's `Observation` fields (`done`, `reward`, `metadata`) and the user's words."""

    done: bool = False
    reward: float | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    text: str | None = None
    messages: list[dict[str, Any]] = Field(default_factory=list)


class OpenEnvDialogue:
    """An OpenEnv-style environment over `SyncDialogueEnv` (`reset`/`step`, and `*_async`).

    Args:
        rows: the rows `trainer_rows` wrote; `reset(episode_id=i)` (or
            `reset(convo_sim=row["convo_sim"])`) picks one.
        **options: `DialogueEnv` options.
    """

    def __init__(self, rows: list[Mapping[str, Any]] | None = None, **options: Any) -> None:
        self.rows = list(rows or [])
        self.options = options
        self.env: DialogueEnv[Any] | None = None
        self.step_count = 0
        self.episode_id: str | None = None

    @property
    def state(self) -> dict[str, Any]:
        """OpenEnv's `State`: `episode_id` and `step_count`."""
        return {"episode_id": self.episode_id, "step_count": self.step_count}

    async def reset_async(
        self, seed: int | None = None, episode_id: str | None = None, **kwargs: Any
    ) -> DialogueObservation:
        """Start a dialogue: `kwargs["convo_sim"]`, else row `episode_id` (an index).

        Raises:
            ValueError: neither names a scenario.
        """
        spec = kwargs.get("convo_sim")
        if spec is None and episode_id is not None and str(episode_id).isdigit():
            spec = self.rows[int(episode_id)]["convo_sim"]
        domain, scenario, row_seed = start_of(_spec(spec))
        self.env = DialogueEnv(domain, **self.options)
        view = await self.env.reset(scenario, row_seed if seed is None else seed)
        self.step_count, self.episode_id = 0, episode_id
        messages = [m.to_openai() for m in view.messages]
        opening = len(scenario.opening_transcript())
        return DialogueObservation(
            done=self.env.done, text=user_text(view.messages[opening:]), messages=messages
        )

    async def step_async(
        self, action: DialogueAction | str, timeout_s: float | None = None, **kwargs: Any
    ) -> DialogueObservation:
        """The policy's message in; the user's answer out, the reward at the end.

        Raises:
            RuntimeError: `reset` was not called, or the dialogue has ended.
        """
        if self.env is None:
            raise RuntimeError("no dialogue: call reset() first")
        message = action if isinstance(action, str) else action.message
        step = await self.env.step(message)
        self.step_count += 1
        done = step.terminated or step.truncated
        return DialogueObservation(
            done=done,
            reward=step.reward,
            metadata=step_info(step),
            text=None if done else user_text(step.info["new_messages"]),
            messages=[m.to_openai() for m in step.observation.messages],
        )

    def reset(
        self, seed: int | None = None, episode_id: str | None = None, **kwargs: Any
    ) -> DialogueObservation:
        """`reset_async`, blocking (on the sync environments' shared loop).

        Raises:
            ValueError: as `reset_async`.
        """
        observation: DialogueObservation = _portal_call(
            lambda: self.reset_async(seed, episode_id, **kwargs)
        )
        return observation

    def step(
        self, action: DialogueAction | str, timeout_s: float | None = None, **kwargs: Any
    ) -> DialogueObservation:
        """`step_async`, blocking.

        Raises:
            RuntimeError: as `step_async`.
        """
        observation: DialogueObservation = _portal_call(lambda: self.step_async(action, timeout_s))
        return observation


def _portal_call(make: Any) -> Any:
    from convo_sim._env import _shared_portal

    return _shared_portal().call(make)
