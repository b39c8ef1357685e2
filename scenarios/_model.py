"""The `Scenario` model: everything one dialogue needs, generic over the domain's goal and state."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Generic

from pydantic import BaseModel, ConfigDict, Field, field_validator
from typing_extensions import TypeVar

from convo_sim._messages import Message, Transcript

__all__ = ["MAX_ID_LENGTH", "GoalT", "Scenario", "StateT"]

MAX_ID_LENGTH = 200
"""The longest scenario id: ids name records, log events and report rows."""

GoalT = TypeVar("GoalT", default=Any)
"""The type of a domain's user goal (the calendar's: `CalendarGoal`)."""
StateT = TypeVar("StateT", default=Any)
"""The type of a domain's expected final state (the calendar's: an `exp_cal_state` mapping)."""


class Scenario(BaseModel, Generic[GoalT, StateT]):
    """Everything one dialogue needs; a domain parametrises it with its goal and state.

    `Scenario[CalendarGoal, ...]` (the calendar's `CalendarScenario`)
    validates `goal` as a calendar goal; the bare `Scenario` takes any goal
    and state as they are.

    Attributes:
        id: unique within a scenario set; rollouts are keyed by it.
        system_prompt: the assistant's system prompt (None: the prefix has it,
            or the assistant brings its own).
        prefix: a conversation prefix to start from (NeMo-Gym rows).
        user_script: user messages to replay, for scripted users.
        goal: what a goal-driven user wants, in the domain's terms.
        persona: name of the user persona, if any.
        expected_state: the expected final state, in the domain's terms.
        max_turns: this scenario's turn limit (None: the run's default).
        seed: seeds the user's phrasing and any sampling.
        metadata: anything else, kept in rollout records.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1, max_length=MAX_ID_LENGTH)
    system_prompt: str | None = None
    prefix: tuple[Message, ...] = ()
    user_script: tuple[str, ...] = ()
    goal: GoalT | None = None
    persona: str | None = None
    expected_state: StateT | None = None
    max_turns: int | None = Field(default=None, ge=1)
    seed: int = Field(default=0, ge=-(2**63), lt=2**63)
    metadata: Mapping[str, Any] = Field(default_factory=dict)

    @field_validator("id")
    @classmethod
    def _printable_id(cls, value: str) -> str:
        # An id names a record, a log event and a line of a report: a blank
        # one, or one with a line break or a lone surrogate, would garble them.
        if not value.strip():
            raise ValueError(f"a scenario id must not be blank, got {value!r}")
        if not value.isprintable():
            raise ValueError(
                f"a scenario id must be printable text (no line breaks or control "
                f"characters), got {value!r}"
            )
        try:
            value.encode()
        except UnicodeEncodeError:
            raise ValueError(f"a scenario id must be valid Unicode text, got {value!r}") from None
        return value

    def expected(self) -> StateT | None:
        """The expected final state (`expected_state`); a domain may derive it from the goal."""
        return self.expected_state

    def opening_transcript(self) -> Transcript:
        """The transcript a dialogue of this scenario starts from."""
        messages = list(self.prefix)
        if self.system_prompt is not None and not (
            messages and messages[0].role in ("system", "developer")
        ):
            messages.insert(0, Message(role="system", content=self.system_prompt))
        return Transcript(messages=tuple(messages))
