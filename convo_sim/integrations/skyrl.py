"""convo-sim as a SkyRL-gym text environment (`skyrl_gym.envs.base_text_env.BaseTextEnv`).

SkyRL's generator builds an environment per sample as
`skyrl_gym.make(env_class, env_config=..., extras=row_extras)`, calls
`init(prompt)` for the first prompt, then `step(text)` with each
generation until `done` (skyrl-gym 0.4.0, `envs/base_text_env.py`). Here
the environment is a `SyncDialogueEnv`: `init` lets the simulated user
speak, each `step` takes the policy's message and answers with the
user's, and the reward is the dialogue's, at the end::

    from convo_sim.integrations.skyrl import register, skyrl_rows
    register()                                    # env_class "convo_sim"
    rows = skyrl_rows(scenarios)                  # the dataset: prompt + extras

Needs the `skyrl` extra (`pip install 'convo-sim[skyrl]'`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from skyrl_gym import register as _skyrl_register
from skyrl_gym.envs.base_text_env import BaseTextEnv, BaseTextEnvStepOutput

from convo_sim._env import SyncDialogueEnv
from convo_sim._rollouts import DEFAULT_MAX_TURNS
from convo_sim.domains._domain import Domain
from convo_sim.integrations._common import (
    result_summary,
    scenario_spec,
    start_of,
    step_info,
    user_text,
)

__all__ = ["ENV_CLASS", "DialogueTextEnv", "register", "skyrl_rows"]

ENV_CLASS = "convo_sim"
"""The `env_class` `register` registers `DialogueTextEnv` under."""

_OPTIONS = ("max_turns", "turn_timeout", "policy_timeout", "time_budget")


class DialogueTextEnv(BaseTextEnv):  # type: ignore[misc]
    """One dialogue of a convo-sim scenario as a SkyRL-gym `BaseTextEnv`.

    Args:
        env_config: SkyRL's environment config; `domain` (default
            "calendar") and `DialogueEnv` options (`max_turns`,
            `turn_timeout`, `policy_timeout`, `time_budget`).
        extras: the dataset row's extras; `convo_sim` names the scenario
            (`skyrl_rows` writes it).

    Raises:
        ValueError: the extras name no scenario of a known domain.
    """

    def __init__(
        self, env_config: Mapping[str, Any] | None = None, extras: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__()
        config = dict(env_config or {})
        domain, self.scenario, self.seed = start_of(
            (extras or {}).get("convo_sim"), config.get("domain", "calendar")
        )
        options = {k: config[k] for k in _OPTIONS if config.get(k) is not None}
        self.env: SyncDialogueEnv[Any] = SyncDialogueEnv(domain, **options)
        self.max_turns = (
            options.get("max_turns")
            or getattr(self.scenario, "max_turns", None)
            or domain.max_turns
            or DEFAULT_MAX_TURNS
        )
        self._metrics: dict[str, Any] = {}

    def init(self, prompt: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """The conversation up to the policy's first turn: the scenario's opening
        (which the row's `prompt` holds) and the simulated user's first message.
        """
        view = self.env.reset(self.scenario, self.seed)
        return [m.to_openai() for m in view.messages], {"done": self.env.done}

    def step(self, action: str) -> BaseTextEnvStepOutput:
        """Take the policy's message; the observation is the simulated user's answer."""
        self.turns += 1
        if self.env.done:
            # The user ended the dialogue before the policy spoke.
            result = self.env.result()
            self._metrics = _metrics(result_summary(result))
            return BaseTextEnvStepOutput(
                observations=[], reward=result.reward or 0.0, done=True, metadata={}
            )
        taken = self.env.step(action)
        done = taken.terminated or taken.truncated
        text = None if done else user_text(taken.info["new_messages"])
        metadata = step_info(taken)
        if done:
            self._metrics = _metrics(metadata["result"])
        return BaseTextEnvStepOutput(
            observations=[] if text is None else [{"role": "user", "content": text}],
            reward=taken.reward,
            done=done,
            metadata=metadata,
            postprocessed_action=None,
        )

    def get_metrics(self) -> dict[str, Any]:
        """The finished dialogue's reward, turns and ending (empty before the end)."""
        return dict(self._metrics)

    def close(self) -> None:
        """End a dialogue still going on (as `cancelled`)."""
        if not self.env.done:
            self.env.result()


def _metrics(result: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "reward": result.get("reward") or 0.0,
        "turns": result["turns"],
        f"termination/{result['termination']}": 1.0,
    }


def register(env_class: str = ENV_CLASS) -> None:
    """Register `DialogueTextEnv` with SkyRL-gym (`skyrl_gym.make(env_class, ...)`)."""
    _skyrl_register(id=env_class, entry_point=DialogueTextEnv)


def skyrl_rows(
    scenarios: Iterable[Any],
    *,
    domain: str | Domain[Any] = "calendar",
    env_class: str = ENV_CLASS,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """SkyRL dataset rows: `prompt` (the opening), `env_class`, and the scenario in `convo_sim`."""
    return [
        {
            "prompt": scenario.opening_transcript().to_openai(),
            "env_class": env_class,
            "convo_sim": scenario_spec(scenario, domain, seed),
        }
        for scenario in scenarios
    ]
