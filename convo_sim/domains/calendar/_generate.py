"""Seeded generation of calendar scenarios that are proven solvable.

Each scenario is built around a hidden schedule (events laid out without
overlap in the working window), so that its final constraints hold together
by construction; "moves" add an earlier constraint that a later step
replaces. Then every prefix of its steps, which is what the user has asked
for at each point of the dialogue, is checked with the exact solver
(`convo_sim.domains.calendar._solve.is_solvable`), and the scenario is drawn again if
any is impossible.

Scenario `i` of a seed depends only on `(seed, i)`, so the first `k`
scenarios of `generate_scenarios(n)` are those of
`generate_scenarios(k)`.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from convo_sim.domains.calendar._model import WORKING_WINDOW, Constraint, ExpectedState
from convo_sim.domains.calendar._prompts import CALENDAR_SYSTEM_PROMPT
from convo_sim.domains.calendar._scenario import CalendarGoal, CalendarScenario, GoalStep
from convo_sim.domains.calendar._solve import is_solvable

__all__ = ["DURATIONS", "PERSONA_CHOICES", "generate_scenarios", "is_goal_solvable"]

DURATIONS = (15, 30, 45, 60, 75, 90, 105, 120)
"""Event durations the generator draws from, in minutes."""

PERSONA_CHOICES: tuple[str | None, ...] = (None, "cooperative", "terse", "verbose")
"""Personas given to generated scenarios (bundled persona names; None for none)."""

_GRID = 15
_KINDS = ("none", "before", "after", "between", "at")

_TOPICS = (
    "Sprint planning", "Design review", "Budget check-in", "Customer call", "Code review",
    "Team lunch", "Coffee chat", "Product demo", "Hiring debrief", "Quarterly planning",
    "Security training", "Roadmap sync", "Vendor negotiation", "Retrospective",
    "Onboarding session", "Data quality review", "Board prep", "Marketing sync",
    "Support escalation review", "Architecture deep dive", "Interview panel", "Yoga break",
    "Dentist appointment", "Call with the landlord", "Parent-teacher meeting",
    "Incident postmortem", "Pricing workshop", "User research readout", "Release go/no-go",
    "Grant proposal review", "Lab safety walkthrough", "Mentoring session", "Podcast recording",
    "Travel booking", "Contract review", "Physiotherapy", "Style guide review",
)  # fmt: skip
_QUALIFIERS = (
    "", "", "", ": mobile app", ": onboarding flow", " with Priya", " with the finance team",
    " for the website relaunch", " with Marco", ": checkout redesign", " with the platform team",
    ": accessibility audit", " with Dr Okafor", ": search ranking", " for the spring campaign",
    ": billing migration", " with Aiko and Tom",
)  # fmt: skip


def is_goal_solvable(goal: CalendarGoal, *, window: tuple[int, int] = WORKING_WINDOW) -> bool:
    """Whether what the user has asked for is satisfiable after every step of `goal`."""
    for upto in range(1, len(goal.steps) + 1):
        state = ExpectedState.from_nemo(goal.expected_state(upto))
        if not is_solvable(state.values(), window=window):
            return False
    return True


def generate_scenarios(
    n: int,
    *,
    seed: int = 0,
    min_events: int = 2,
    max_events: int = 6,
    move_rate: float = 0.35,
    id_prefix: str = "generated",
) -> list[CalendarScenario]:
    """Generate `n` varied calendar scenarios, each proven solvable at every step.

    Args:
        n: how many scenarios.
        seed: the seed; the same seed always gives the same scenarios.
        min_events: the fewest events in a scenario (at least 1).
        max_events: the most events in a scenario (at most 12).
        move_rate: the chance that a scenario moves one event (a later
            constraint replacing an earlier one).
        id_prefix: scenario ids are `f"{id_prefix}-{seed}-{i}"`.

    Raises:
        ValueError: an argument is out of range.
    """
    if n < 0:
        raise ValueError(f"n must be at least 0, got {n!r}")
    if not 1 <= min_events <= max_events <= 12:
        raise ValueError(
            f"need 1 <= min_events <= max_events <= 12, got {min_events!r} and {max_events!r}"
        )
    if not 0.0 <= move_rate <= 1.0:
        raise ValueError(f"move_rate must be in [0, 1], got {move_rate!r}")
    return [
        _scenario(
            random.Random(f"{seed}:{i}"),
            f"{id_prefix}-{seed}-{i}",
            min_events,
            max_events,
            move_rate,
        )
        for i in range(n)
    ]


def _scenario(
    rng: random.Random, scenario_id: str, min_events: int, max_events: int, move_rate: float
) -> CalendarScenario:
    while True:
        count = rng.randint(min_events, max_events)
        goal = _goal(rng, count, rng.random() < move_rate)
        if is_goal_solvable(goal):
            break
    return CalendarScenario(
        id=scenario_id,
        system_prompt=CALENDAR_SYSTEM_PROMPT,
        goal=goal,
        persona=rng.choice(PERSONA_CHOICES),
        max_turns=len(goal.steps) + 4,
        seed=rng.randrange(2**31),
        metadata={"source": "generated"},
    )


def _goal(rng: random.Random, count: int, move: bool) -> CalendarGoal:
    opens, closes = WORKING_WINDOW
    while True:  # redraw the durations, not the count, so large scenarios stay common
        durations = [rng.choice(DURATIONS) for _ in range(count)]
        free = closes - opens - sum(durations)
        if free >= 0:
            break
    starts = _hidden_schedule(rng, durations, free)
    names = _names(rng, count)
    finals = [_constraint(rng, start, d) for start, d in zip(starts, durations, strict=True)]
    # Events are revealed in id order; each constraint comes right after its
    # event's add step or later, as NeMo's users often do.
    steps: list[GoalStep] = []
    deferred: list[GoalStep] = []
    movable = [i for i, c in enumerate(finals) if c is not None]
    moved = rng.choice(movable) if move and movable else None
    for i in range(count):
        steps.append(GoalStep(action="add", event_id=i, name=names[i], duration=durations[i]))
        final = finals[i]
        if i == moved:
            steps.append(_step(i, _decoy(rng, durations[i], final)))
            deferred.append(_step(i, final))
        elif final is not None:
            (steps if rng.random() < 0.7 else deferred).append(_step(i, final))
        if deferred and rng.random() < 0.5:
            steps.append(deferred.pop(0))
    steps.extend(deferred)
    return CalendarGoal(steps=tuple(steps))


def _hidden_schedule(rng: random.Random, durations: Sequence[int], free: int) -> list[int]:
    """Lay the events out in a random order with random gaps (on the 15-minute grid)."""
    order = list(range(len(durations)))
    rng.shuffle(order)
    slots = free // _GRID
    cuts = sorted(rng.randint(0, slots) for _ in range(len(durations)))
    gaps = [b - a for a, b in zip([0, *cuts], cuts, strict=False)]
    starts = [0] * len(durations)
    clock = WORKING_WINDOW[0]
    for index, gap in zip(order, gaps, strict=True):
        clock += gap * _GRID
        starts[index] = clock
        clock += durations[index]
    return starts


def _constraint(rng: random.Random, start: int, duration: int) -> Constraint | None:
    """A random constraint that the hidden placement `start` satisfies."""
    opens, closes = WORKING_WINDOW
    end = start + duration
    kind = rng.choice(_KINDS)
    early, late = (_GRID * rng.randint(0, 4) for _ in range(2))
    if kind == "before":
        return Constraint("before", min(closes, end + late))
    if kind == "after":
        return Constraint("after", max(opens, start - early))
    if kind == "between":
        return Constraint("between", max(opens, start - early), min(closes, end + late))
    if kind == "at":
        return Constraint("at", start)
    return None


def _decoy(rng: random.Random, duration: int, final: Constraint | None) -> Constraint:
    """An earlier, different constraint for an event the user will later move."""
    opens, closes = WORKING_WINDOW
    while True:
        start = opens + _GRID * rng.randint(0, (closes - duration - opens) // _GRID)
        decoy = _constraint(rng, start, duration)
        if decoy is not None and decoy != final:
            return decoy


def _step(event_id: int, constraint: Constraint | None) -> GoalStep:
    assert constraint is not None
    return GoalStep(action="constrain", event_id=event_id, constraint=constraint.text)


def _names(rng: random.Random, count: int) -> list[str]:
    topics = rng.sample(_TOPICS, count)
    return [topic + rng.choice(_QUALIFIERS) for topic in topics]
