"""The `Scenario` model: everything one dialogue needs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from convo_sim._messages import Message, Transcript
from convo_sim.domains.calendar._model import Constraint, parse_constraint
from convo_sim.domains.calendar._times import MINUTES_PER_DAY, parse_time

MAX_ID_LENGTH = 200
"""The longest scenario id: ids name records, log events and report rows."""

__all__ = ["CalendarGoal", "GoalStep", "Scenario"]


class GoalStep(BaseModel):
    """One thing the simulated user asks for, in the order it reveals them.

    `add` introduces an event (name and duration); `constrain` sets or
    replaces the event's time constraint (NeMo text: `before 1pm`,
    `after 10:30am`, `between 11am and 2pm`, `at 3pm`), which is also how a
    user moves an event.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    action: Literal["add", "constrain"]
    event_id: int = Field(ge=0, lt=2**31)
    name: str | None = None
    duration: int | None = Field(default=None, gt=0, le=MINUTES_PER_DAY)
    constraint: str | None = None

    @field_validator("constraint")
    @classmethod
    def _known_constraint(cls, value: str | None) -> str | None:
        # Raises ConstraintFormatError (a ValueError) naming the expected forms.
        _speakable(parse_constraint(value), value)
        return value

    @model_validator(mode="after")
    def _complete(self) -> GoalStep:
        if self.action == "add" and (not self.name or self.duration is None):
            raise ValueError("an 'add' step needs a non-empty 'name' and a 'duration' in minutes")
        if self.action == "constrain" and not self.constraint:
            raise ValueError("a 'constrain' step needs a 'constraint' such as 'before 1pm'")
        return self


def _speakable(constraint: Constraint | None, text: str | None) -> None:
    """Raise unless the simulated user can say the constraint (its 12-hour text).

    `parse_time` reads `24:00` as the end of the day, which 12-hour text
    cannot name: `at 24:00` would be accepted here and crash the user when
    it first speaks.
    """
    if constraint is None:
        return
    if not _within_day(constraint):
        raise ValueError(
            f"not a constraint the user can say: {text!r}; its times must be before "
            "midnight (24:00 is the end of the day, not a time of it)"
        )


def _within_day(constraint: Constraint) -> bool:
    """Every time of the constraint is a time of the day (what 12-hour text can say)."""
    return constraint.time < MINUTES_PER_DAY and (
        constraint.until is None or constraint.until < MINUTES_PER_DAY
    )


class CalendarGoal(BaseModel):
    """The user's calendar goal: the steps it reveals, turn by turn."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    steps: tuple[GoalStep, ...] = Field(min_length=1)
    min_time: str = "10:00"
    max_time: str = "16:00"

    @field_validator("min_time", "max_time")
    @classmethod
    def _clock_time(cls, value: str) -> str:
        # Raises TimeFormatError (a ValueError) naming the accepted forms.
        parse_time(value)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> CalendarGoal:
        if parse_time(self.min_time) >= parse_time(self.max_time):
            raise ValueError(
                f"the working window is empty: min_time {self.min_time!r} is not before "
                f"max_time {self.max_time!r}"
            )
        added: set[int] = set()
        for index, step in enumerate(self.steps):
            if step.action == "add":
                if step.event_id in added:
                    raise ValueError(f"steps[{index}] adds event {step.event_id} a second time")
                added.add(step.event_id)
            elif step.event_id not in added:
                raise ValueError(
                    f"steps[{index}] constrains event {step.event_id} before any step adds it"
                )
        return self

    def expected_state(self, upto: int | None = None) -> dict[str, dict[str, Any]]:
        """The expected state in NeMo-Gym's `exp_cal_state` format.

        Args:
            upto: only the first `upto` steps (what the user has revealed so
                far); all of them by default.
        """
        state: dict[str, dict[str, Any]] = {}
        for step in self.steps[:upto]:
            key = str(step.event_id)
            if step.action == "add":
                state[key] = {
                    "event_id": step.event_id,
                    "duration": step.duration,
                    "constraint": None,
                    "min_time": self.min_time,
                    "max_time": self.max_time,
                }
            elif key in state:
                state[key]["constraint"] = step.constraint
        return state


class Scenario(BaseModel):
    """Everything one dialogue needs.

    Attributes:
        id: unique within a scenario set; rollouts are keyed by it.
        system_prompt: the assistant's system prompt (None: the prefix has it,
            or the assistant brings its own).
        prefix: a conversation prefix to start from (NeMo-Gym rows).
        user_script: user messages to replay, for scripted users.
        goal: the calendar goal a goal-driven user reveals.
        persona: name of the user persona, if any.
        expected_state: the expected final calendar, in NeMo-Gym
            `exp_cal_state` or seed `expected_state` format.
        max_turns: this scenario's turn limit (None: the run's default).
        seed: seeds the user's phrasing and any sampling.
        metadata: anything else, kept in rollout records.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1, max_length=MAX_ID_LENGTH)
    system_prompt: str | None = None
    prefix: tuple[Message, ...] = ()
    user_script: tuple[str, ...] = ()
    goal: CalendarGoal | None = None
    persona: str | None = None
    expected_state: Mapping[str, Mapping[str, Any]] | None = None
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

    def expected(self) -> Mapping[str, Mapping[str, Any]] | None:
        """The expected final calendar: `expected_state`, else the goal's, else None."""
        if self.expected_state is not None:
            return self.expected_state
        return self.goal.expected_state() if self.goal is not None else None

    def opening_transcript(self) -> Transcript:
        """The transcript a dialogue of this scenario starts from."""
        messages = list(self.prefix)
        if self.system_prompt is not None and not (
            messages and messages[0].role in ("system", "developer")
        ):
            messages.insert(0, Message(role="system", content=self.system_prompt))
        return Transcript(messages=tuple(messages))
