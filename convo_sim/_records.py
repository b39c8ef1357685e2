"""The rollout record: one finished dialogue, as one JSON line.

A `Rollout` is NeMo-Gym compatible (`responses_create_params` holding the
whole dialogue as Responses API `input`, and `reward`) and carries what
convo-sim knows besides: which scenario and sample it is, the per-sample
seed, why the dialogue ended, every turn score and verdict, usage, timings
and any error. Records survive a JSON round trip unchanged, so
`read_rollouts` gives back exactly what was written.

A record that cannot be written as JSON (a lone surrogate such as the JSON
escape `"\udcff"` in a model's reply, or a verifier detail that is no JSON
value) is never an abort: `Rollout.escaped` turns it into an error record
of that dialogue, its text escaped, and every other record is unaffected.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import PydanticSerializationError

from convo_sim._capture import Contiguity, check_contiguity, policy_items
from convo_sim._messages import TOKEN_FIELDS, Transcript
from convo_sim._results import (
    DialogueResult,
    ErrorInfo,
    TerminationReason,
    Timing,
    TurnScore,
    Usage,
    Verdict,
)
from convo_sim._user_failure import UserFailure

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
        usage_by_role: the same, per side (`assistant`, `user`): the policy's
            tokens apart from the simulated user's.
        contiguity: with token capture, whether the policy turns form one
            token sequence (or where it broke); None without token data.
        timings: per-message latencies.
        duration_s: wall time of the dialogue.
        error: the failure that ended the dialogue, if any.
        dialogue_id: the id bound to the dialogue's log events.
        metadata: the scenario's metadata (without `responses_create_params`),
            plus what the domain records (`persona`, `fidelity`).
        user_failure: what the simulated user did wrong: False, or the tags
            (`convo_sim.UserFailureTag`); None when nobody reviewed it.
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
    usage_by_role: Mapping[Literal["assistant", "user"], Usage] = Field(default_factory=dict)
    contiguity: Contiguity | None = None
    timings: tuple[Timing, ...] = ()
    duration_s: float = 0.0
    error: ErrorInfo | None = None
    dialogue_id: str = ""
    metadata: Mapping[str, Any] = Field(default_factory=dict)
    user_failure: UserFailure | None = None

    @property
    def key(self) -> RolloutKey:
        """`(scenario_id, sample_index)`, the record's identity within a run."""
        return (self.scenario_id, self.sample_index)

    @property
    def transcript(self) -> Transcript:
        """The dialogue rebuilt from `responses_create_params["input"]`.

        Message metadata and speaker names are not part of the Responses
        input shape, so they are not in the rebuilt transcript, except a
        captured assistant reply's token fields.
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
        tokens: list[tuple[int, dict[str, Any]]] = []
        try:
            contiguity = check_contiguity(params["input"])
        except ValueError as exc:  # a model adapter of someone else's that garbled them
            contiguity = Contiguity(contiguous=False, reason=str(exc))
        else:
            # Checked JSON values already: they skip the JSON round trip
            # below, which would cost more than the turns that made them.
            tokens = _take_tokens(params["input"])
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
            usage_by_role=_usage_by_role(result.transcript),
            contiguity=contiguity,
            timings=result.timings,
            duration_s=result.duration_s,
            error=result.error,
            dialogue_id=result.dialogue_id,
            metadata=meta,
        )
        written = record.writable()
        items = written.responses_create_params.get("input")
        if tokens and isinstance(items, list) and len(items) == len(params["input"]):
            for index, fields in tokens:
                items[index].update(fields)
        return written

    def normalized(self) -> Rollout:
        """This record as it reads back from JSON (an equal copy).

        Raises:
            pydantic_core.PydanticSerializationError: the record holds text
                or a value JSON cannot hold (see `writable`).
        """
        return Rollout.model_validate_json(self.model_dump_json())

    def writable(self) -> Rollout:
        """`normalized()`, or the `escaped` record when this one cannot be written."""
        try:
            return self.normalized()
        except (PydanticSerializationError, ValueError) as exc:
            return self.escaped(exc)

    def to_json_line(self) -> bytes:
        """The record as one line of UTF-8 JSON, newline included; never fails.

        A record that cannot be written is written as its `escaped` form.
        """
        try:
            text = self.model_dump_json()
        except (PydanticSerializationError, ValueError) as exc:
            text = self.escaped(exc).model_dump_json()
        return text.encode() + b"\n"

    def escaped(self, problem: BaseException) -> Rollout:
        """This record made writable, as an error of its dialogue.

        Every string is escaped where UTF-8 cannot hold it (a lone
        surrogate `\udcff` becomes the six characters `\udcff`), any value
        that is no JSON value becomes its `repr`, the reward becomes 0 (the
        verifiers judged text that is not what is stored) and `error` says
        why, unless the dialogue had already failed for another reason.
        """
        data = _json_safe(self.model_dump(mode="python"))
        data["reward"] = 0.0
        if data.get("error") is None:
            data["error"] = {
                "source": "record",
                "type": type(problem).__name__,
                "message": _escape_text(
                    f"the record could not be written as JSON and was escaped: {str(problem)[:300]}"
                ),
                "turn": 0,
            }
        try:
            return Rollout.model_validate(data).normalized()
        except (ValidationError, PydanticSerializationError, ValueError):
            # Only a record built without validation gets here; keep what
            # identifies it and the error.
            return Rollout(
                responses_create_params={"input": []},
                reward=0.0,
                scenario_id=_escape_text(str(self.scenario_id)),
                sample_index=max(0, int(self.sample_index)),
                seed=int(self.seed),
                termination=self.termination,
                terminated_by=_escape_text(str(self.terminated_by)),
                turns=max(0, int(self.turns)),
                error=ErrorInfo(
                    source="record",
                    type=type(problem).__name__,
                    message="the record could not be written as JSON",
                ),
            )


def _take_tokens(items: list[dict[str, Any]]) -> list[tuple[int, dict[str, Any]]]:
    """Remove the token fields from the policy items; returns them by item index."""
    taken = []
    for index, item in policy_items(items):
        assert isinstance(item, dict)
        taken.append((index, {name: item.pop(name) for name in TOKEN_FIELDS if name in item}))
    return taken


def _usage_by_role(transcript: Transcript) -> dict[Literal["assistant", "user"], Usage]:
    totals = {"assistant": Usage(), "user": Usage()}
    for message in transcript.messages:
        usage = message.metadata.get("usage") if message.metadata else None
        if isinstance(usage, Mapping) and message.role in totals:
            totals[message.role] = totals[message.role] + Usage.model_validate(usage)
    return {"assistant": totals["assistant"], "user": totals["user"]}


def _escape_text(text: str) -> str:
    """`text` with what UTF-8 cannot encode (lone surrogates) written as `\\uXXXX` escapes."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode()
    return text


_JSON_SCALARS = (bool, int, float, type(None))


def _json_safe(value: Any, depth: int = 0) -> Any:
    """A JSON-writable copy of `value`: text escaped, anything else its `repr`."""
    if isinstance(value, str):
        return _escape_text(value)
    if isinstance(value, _JSON_SCALARS):
        return value
    if depth > 200:  # deeper than any record we write; cut rather than recurse on
        return "..."
    if isinstance(value, Mapping):
        return {
            _escape_text(k if isinstance(k, str) else repr(k)): _json_safe(v, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_json_safe(v, depth + 1) for v in value]
    return _escape_text(repr(value))
