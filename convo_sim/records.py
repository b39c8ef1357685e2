"""The rollout record: one finished dialogue, as one JSON line.

A `Rollout` is NeMo-Gym compatible (`responses_create_params` holding the
whole dialogue as Responses API `input`, and `reward`) and carries what
convo-sim knows besides: which scenario and sample it is, the per-sample
seed, why the dialogue ended, every turn score and verdict, usage, timings
and any error. Records survive a JSON round trip unchanged, so
`read_rollouts` gives back exactly what was written.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from convo_sim.messages import Transcript
from convo_sim.results import (
    DialogueResult,
    ErrorInfo,
    TerminationReason,
    Timing,
    TurnScore,
    Usage,
    Verdict,
)

__all__ = ["Rollout", "RolloutKey", "ScenarioLike"]

RolloutKey = tuple[str, int]
"""`(scenario_id, sample_index)`: what identifies a rollout within a run."""


class ScenarioLike(Protocol):
    """What the rollout engine needs from a scenario.

    `convo_sim.scenarios.Scenario` fits; the core names only this protocol so
    that it never imports the scenario family.
    """

    @property
    def id(self) -> str: ...

    @property
    def max_turns(self) -> int | None: ...

    @property
    def metadata(self) -> Mapping[str, Any]: ...

    def opening_transcript(self) -> Transcript: ...


class Rollout(BaseModel):
    """One finished dialogue of one scenario sample.

    Attributes:
        responses_create_params: NeMo-Gym's request shape: `input` is the
            whole dialogue (prefix included) as Responses API input items;
            any other keys come from the scenario's
            `metadata["responses_create_params"]` (tools, temperature, ...).
        reward: the aggregated reward, or None when nothing was scored.
        scenario_id: the scenario's id.
        sample_index: 0-based index of this sample of the scenario.
        seed: the per-sample seed the actors were built with.
        termination: why the dialogue ended.
        terminated_by: the detector or limit that ended it.
        turns: assistant turns produced (a prefix does not count).
        turn_scores: every turn verifier's score for every assistant turn.
        verdicts: every final verifier's verdict.
        usage: token usage summed over the dialogue.
        timings: per-message latencies.
        duration_s: wall time of the dialogue.
        error: the failure that ended the dialogue, if any.
        dialogue_id: the id bound to the dialogue's log events.
        metadata: the scenario's metadata (without `responses_create_params`).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    responses_create_params: Mapping[str, Any]
    reward: float | None = None
    scenario_id: str
    sample_index: int = Field(ge=0)
    seed: int
    termination: TerminationReason
    terminated_by: str
    turns: int = Field(ge=0)
    turn_scores: tuple[TurnScore, ...] = ()
    verdicts: tuple[Verdict, ...] = ()
    usage: Usage = Field(default_factory=Usage)
    timings: tuple[Timing, ...] = ()
    duration_s: float = 0.0
    error: ErrorInfo | None = None
    dialogue_id: str = ""
    metadata: Mapping[str, Any] = Field(default_factory=dict)

    @property
    def key(self) -> RolloutKey:
        """`(scenario_id, sample_index)`, the record's identity within a run."""
        return (self.scenario_id, self.sample_index)

    @property
    def transcript(self) -> Transcript:
        """The dialogue rebuilt from `responses_create_params["input"]`.

        Message metadata and speaker names are not part of the Responses
        input shape, so they are not in the rebuilt transcript.
        """
        return Transcript.from_responses_input(self.responses_create_params.get("input", ()))

    @classmethod
    def from_result(
        cls, scenario: ScenarioLike, sample_index: int, seed: int, result: DialogueResult
    ) -> Rollout:
        """Build the record of one finished dialogue.

        The record is normalised through JSON (tuples in verifier details
        become lists, ...), so it equals what `read_rollouts` reads back.
        """
        meta = dict(scenario.metadata)
        extra = meta.pop("responses_create_params", None)
        params: dict[str, Any] = dict(extra) if isinstance(extra, Mapping) else {}
        params["input"] = result.transcript.to_responses_input()
        record = cls(
            responses_create_params=params,
            reward=result.reward,
            scenario_id=scenario.id,
            sample_index=sample_index,
            seed=seed,
            termination=result.termination,
            terminated_by=result.terminated_by,
            turns=result.turns,
            turn_scores=result.turn_scores,
            verdicts=result.verdicts,
            usage=result.usage,
            timings=result.timings,
            duration_s=result.duration_s,
            error=result.error,
            dialogue_id=result.dialogue_id,
            metadata=meta,
        )
        return record.normalized()

    def normalized(self) -> Rollout:
        """This record as it reads back from JSON (an equal copy)."""
        return Rollout.model_validate_json(self.model_dump_json())
