"""The calendar's scenario: `CalendarGoal` (steps revealed turn by turn) and `CalendarScenario`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, TypeAlias, cast

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from convo_sim.domains.calendar._model import Constraint, parse_constraint
from convo_sim.domains.calendar._times import MINUTES_PER_DAY, parse_time
from convo_sim.scenarios._model import Scenario

__all__ = ["CalendarGoal", "CalendarScenario", "CalendarState", "GoalStep", "expected_state_of"]


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


CalendarState: TypeAlias = Mapping[str, Mapping[str, Any]]
"""An expected calendar: NeMo-Gym `exp_cal_state` or seed `expected_state` format."""


def expected_state_of(scenario: Scenario) -> CalendarState | None:
    """The expected final calendar of a scenario: its `expected_state`, else its goal's.

    Reads any `Scenario` (a `CalendarScenario`, or a bare `Scenario` holding
    a `CalendarGoal`), so calendar code never depends on which class built it.
    """
    if scenario.expected_state is not None:
        return cast(CalendarState, scenario.expected_state)
    goal = scenario.goal
    return goal.expected_state() if isinstance(goal, CalendarGoal) else None


class CalendarScenario(Scenario[CalendarGoal, CalendarState]):
    """A calendar scenario: `Scenario` with a `CalendarGoal` and an expected calendar.

    `expected_state` is in NeMo-Gym `exp_cal_state` or seed `expected_state`
    format; `expected()` falls back on the goal's when it is None.
    """

    def expected(self) -> CalendarState | None:
        """The expected final calendar: `expected_state`, else the goal's, else None."""
        return expected_state_of(self)
