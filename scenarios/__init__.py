"""Scenarios: the model, file reading, scripts and `run_scenario` (installed as `convo_sim.scenarios`).

`Scenario[GoalT, StateT]` is the model every domain parametrises with its
goal and expected state. Every function here takes the domain by name
(`domain="calendar"` by default). The calendar's scenario names (`CalendarGoal`, `GoalStep`,
`CALENDAR_SYSTEM_PROMPT`, `default_user`, `generate_calendar_scenarios`,
the record readers) are still importable from here, as aliases of the
same names in `convo_sim.domains.calendar` (`generate_calendar_scenarios`
is its `generate_scenarios`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from convo_sim._rollouts import DEFAULT_MAX_TURNS
from convo_sim.scenarios._loading import bundled_scenarios, load_scenarios
from convo_sim.scenarios._model import GoalT, Scenario, StateT
from convo_sim.scenarios._reading import Record, line_of, read_records
from convo_sim.scenarios._run import run_scenario, user_seed
from convo_sim.scenarios._saving import save_scenarios
from convo_sim.scenarios._script import ScenarioScript, load_script, run_script

if TYPE_CHECKING:
    from convo_sim.domains.calendar import CALENDAR_SYSTEM_PROMPT as CALENDAR_SYSTEM_PROMPT
    from convo_sim.domains.calendar import DURATIONS as DURATIONS
    from convo_sim.domains.calendar import PERSONA_CHOICES as PERSONA_CHOICES
    from convo_sim.domains.calendar import BundledSet as BundledSet
    from convo_sim.domains.calendar import CalendarGoal as CalendarGoal
    from convo_sim.domains.calendar import GoalStep as GoalStep
    from convo_sim.domains.calendar import NemoMode as NemoMode
    from convo_sim.domains.calendar import default_user as default_user
    from convo_sim.domains.calendar import (  # noqa: F401
        generate_scenarios as generate_calendar_scenarios,
    )
    from convo_sim.domains.calendar import is_goal_solvable as is_goal_solvable
    from convo_sim.domains.calendar import native_scenario as native_scenario
    from convo_sim.domains.calendar import nemo_replay_scenario as nemo_replay_scenario
    from convo_sim.domains.calendar import nemo_scenario as nemo_scenario
    from convo_sim.domains.calendar import seed_scenario as seed_scenario

_CALENDAR_ALIASES = {
    "CALENDAR_SYSTEM_PROMPT": "CALENDAR_SYSTEM_PROMPT",
    "DURATIONS": "DURATIONS",
    "PERSONA_CHOICES": "PERSONA_CHOICES",
    "BundledSet": "BundledSet",
    "CalendarGoal": "CalendarGoal",
    "GoalStep": "GoalStep",
    "NemoMode": "NemoMode",
    "default_user": "default_user",
    "generate_calendar_scenarios": "generate_scenarios",
    "is_goal_solvable": "is_goal_solvable",
    "native_scenario": "native_scenario",
    "nemo_replay_scenario": "nemo_replay_scenario",
    "nemo_scenario": "nemo_scenario",
    "seed_scenario": "seed_scenario",
}
"""Old name here -> name in `convo_sim.domains.calendar`."""


def __getattr__(name: str) -> Any:
    # Imported on first use: the calendar domain imports this package's
    # reading machinery, so importing the domain here would be a cycle.
    if name in _CALENDAR_ALIASES:
        from convo_sim.domains import calendar

        return getattr(calendar, _CALENDAR_ALIASES[name])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_MAX_TURNS",
    "GoalT",
    "Record",
    "Scenario",
    "ScenarioScript",
    "StateT",
    "bundled_scenarios",
    "line_of",
    "load_scenarios",
    "load_script",
    "read_records",
    "run_scenario",
    "run_script",
    "save_scenarios",
    "user_seed",
]
