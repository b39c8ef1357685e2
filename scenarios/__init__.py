"""Scenarios: the model, file reading, scripts and `run_scenario` (installed as `convo_sim.scenarios`).

The calendar's scenario names (`CalendarGoal`, `GoalStep`,
`CALENDAR_SYSTEM_PROMPT`, `generate_calendar_scenarios`, the loaders and the
bundled sets) are still importable from here, as aliases of the same names
in `convo_sim.domains.calendar`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from convo_sim.domains.calendar import (
        CALENDAR_SYSTEM_PROMPT as CALENDAR_SYSTEM_PROMPT,
    )
    from convo_sim.domains.calendar import (
        DURATIONS as DURATIONS,
    )
    from convo_sim.domains.calendar import (
        PERSONA_CHOICES as PERSONA_CHOICES,
    )
    from convo_sim.domains.calendar import (
        BundledSet as BundledSet,
    )
    from convo_sim.domains.calendar import (
        CalendarGoal as CalendarGoal,
    )
    from convo_sim.domains.calendar import (
        GoalStep as GoalStep,
    )
    from convo_sim.domains.calendar import (
        NemoMode as NemoMode,
    )
    from convo_sim.domains.calendar import (
        Scenario as Scenario,
    )
    from convo_sim.domains.calendar import (
        bundled_scenarios as bundled_scenarios,
    )
    from convo_sim.domains.calendar import (
        generate_calendar_scenarios as generate_calendar_scenarios,
    )
    from convo_sim.domains.calendar import (
        is_goal_solvable as is_goal_solvable,
    )
    from convo_sim.domains.calendar import (
        load_scenarios as load_scenarios,
    )
    from convo_sim.domains.calendar import (
        native_scenario as native_scenario,
    )
    from convo_sim.domains.calendar import (
        nemo_replay_scenario as nemo_replay_scenario,
    )
    from convo_sim.domains.calendar import (
        nemo_scenario as nemo_scenario,
    )
    from convo_sim.domains.calendar import (
        seed_scenario as seed_scenario,
    )
    from convo_sim.scenarios._run import (
        DEFAULT_MAX_TURNS as DEFAULT_MAX_TURNS,
    )
    from convo_sim.scenarios._run import (
        default_user as default_user,
    )
    from convo_sim.scenarios._run import (
        run_scenario as run_scenario,
    )

_CALENDAR_ALIASES = frozenset(
    {
        "CALENDAR_SYSTEM_PROMPT",
        "DURATIONS",
        "PERSONA_CHOICES",
        "BundledSet",
        "CalendarGoal",
        "GoalStep",
        "NemoMode",
        "Scenario",
        "bundled_scenarios",
        "generate_calendar_scenarios",
        "is_goal_solvable",
        "load_scenarios",
        "native_scenario",
        "nemo_replay_scenario",
        "nemo_scenario",
        "seed_scenario",
    }
)
_RUN_NAMES = frozenset({"DEFAULT_MAX_TURNS", "default_user", "run_scenario"})


def __getattr__(name: str) -> Any:
    # Imported on first use: the calendar domain imports this package's
    # reading machinery, so importing the domain here would be a cycle.
    if name in _CALENDAR_ALIASES:
        from convo_sim.domains import calendar

        return getattr(calendar, name)
    if name in _RUN_NAMES:
        from convo_sim.scenarios import _run

        return getattr(_run, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["DEFAULT_MAX_TURNS", "Scenario", "default_user", "run_scenario"]
