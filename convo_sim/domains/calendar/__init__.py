"""The calendar domain: a scheduling assistant, its simulated user, verifiers and data.

Everything calendar lives in this one package: times, constraints and
expected states; the reply reader every reader shares (`read_reply`: the
grader, the turn verifiers, the simulated user and the solver assistant);
the exact scheduler; the scenario model (`CalendarScenario`, with a
`CalendarGoal` of `GoalStep`s) and its file formats (NeMo-Gym rows, seed
records, native records); the generator; the rule-based assistant and
users; the turn verifiers and NeMo-Gym's grading rule; the user-fidelity
metrics; the models `convo-sim serve` serves; and the bundled sets.
`DOMAIN` puts them behind the `Domain` seam (`convo_sim.domains.get("calendar")`).

Errors raised here::

    convo_sim.InputError
    └── CalendarDataError (also a ValueError)   calendar data is malformed
        ├── TimeFormatError                     not a clock time
        ├── ConstraintFormatError               not a constraint
        └── ExpectedStateError                  an expected state is malformed
"""

from __future__ import annotations

from convo_sim.domains.calendar._assistant import CalendarSolverAssistant
from convo_sim.domains.calendar._domain import DOMAIN, default_user
from convo_sim.domains.calendar._fidelity import UserFidelity, user_fidelity, with_fidelity
from convo_sim.domains.calendar._generate import (
    DURATIONS,
    PERSONA_CHOICES,
    generate_scenarios,
    is_goal_solvable,
)
from convo_sim.domains.calendar._grading import CalendarGrade, grade_calendar_response
from convo_sim.domains.calendar._loaders import (
    BundledSet,
    NemoMode,
    bundled_scenarios,
    load_scenarios,
    native_scenario,
    nemo_replay_scenario,
    nemo_scenario,
    seed_scenario,
)
from convo_sim.domains.calendar._model import (
    WORKING_WINDOW,
    Constraint,
    ConstraintFormatError,
    ConstraintKind,
    ExpectedEvent,
    ExpectedState,
    ExpectedStateError,
    ListedEvent,
    extract_json_list,
    format_calendar,
    json_list_span,
    parse_constraint,
    parse_listed_events,
)
from convo_sim.domains.calendar._persona_user import PersonaCalendarUser
from convo_sim.domains.calendar._prompts import CALENDAR_SYSTEM_PROMPT
from convo_sim.domains.calendar._reply import CalendarReading, read_reply, reply_minutes
from convo_sim.domains.calendar._scenario import (
    CalendarGoal,
    CalendarScenario,
    CalendarState,
    GoalStep,
    expected_state_of,
)
from convo_sim.domains.calendar._solve import EventSpec, is_solvable, solve_schedule
from convo_sim.domains.calendar._times import (
    MINUTES_PER_DAY,
    CalendarDataError,
    TimeFormatError,
    format_12h,
    format_24h,
    parse_time,
)
from convo_sim.domains.calendar._user import CalendarUser
from convo_sim.domains.calendar._verifiers import (
    CalendarFinalVerifier,
    ConstraintsHonoured,
    EventsPresent,
    NoConflicts,
    ValidCalendar,
    calendar_verifiers,
)

__all__ = [
    "CALENDAR_SYSTEM_PROMPT",
    "DOMAIN",
    "DURATIONS",
    "MINUTES_PER_DAY",
    "PERSONA_CHOICES",
    "WORKING_WINDOW",
    "BundledSet",
    "CalendarDataError",
    "CalendarFinalVerifier",
    "CalendarGoal",
    "CalendarGrade",
    "CalendarReading",
    "CalendarScenario",
    "CalendarSolverAssistant",
    "CalendarState",
    "CalendarUser",
    "Constraint",
    "ConstraintFormatError",
    "ConstraintKind",
    "ConstraintsHonoured",
    "EventSpec",
    "EventsPresent",
    "ExpectedEvent",
    "ExpectedState",
    "ExpectedStateError",
    "GoalStep",
    "ListedEvent",
    "NemoMode",
    "NoConflicts",
    "PersonaCalendarUser",
    "TimeFormatError",
    "UserFidelity",
    "ValidCalendar",
    "bundled_scenarios",
    "calendar_verifiers",
    "default_user",
    "expected_state_of",
    "extract_json_list",
    "format_12h",
    "format_24h",
    "format_calendar",
    "generate_scenarios",
    "grade_calendar_response",
    "is_goal_solvable",
    "is_solvable",
    "json_list_span",
    "load_scenarios",
    "native_scenario",
    "nemo_replay_scenario",
    "nemo_scenario",
    "parse_constraint",
    "parse_listed_events",
    "parse_time",
    "read_reply",
    "reply_minutes",
    "seed_scenario",
    "solve_schedule",
    "user_fidelity",
    "with_fidelity",
]
