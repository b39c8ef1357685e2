"""Scenarios with a custom final verifier next to the calendar domain's own.

    convo-sim run --script scenarios/examples/custom_verifier.py

`StableCalendar` counts how often an event that was already on the calendar
moved between two of the assistant's calendars: users dislike a schedule
that keeps shuffling. `verifiers(scenario)` adds it to the defaults, and
`REWARD` takes the minimum of the final verdicts, so a correct but restless
calendar scores less than a correct and stable one.
"""

from __future__ import annotations

from collections.abc import Sequence

from convo_sim import FinalContext, FinalVerifier, TurnVerifier, Verdict, final_only
from convo_sim.domains.calendar import (
    CalendarGoal,
    CalendarScenario,
    GoalStep,
    calendar_verifiers,
    parse_listed_events,
)


class StableCalendar:
    """Reward 1 / (1 + moves): moves are start-time changes of events already shown."""

    name = "stable_calendar"

    def __call__(self, ctx: FinalContext) -> Verdict:
        moves = 0
        previous: dict[str, int] = {}
        for message in ctx.transcript.by_role("assistant"):
            current = {e.event_id: e.start_time for e in parse_listed_events(message.text) or ()}
            moves += sum(1 for key, start in current.items() if previous.get(key, start) != start)
            previous = current or previous
        return Verdict(
            reward=1.0 / (1 + moves),
            reason="pass" if moves == 0 else "events_moved",
            details={"moves": moves},
        )


def verifiers(
    scenario: CalendarScenario,
) -> tuple[Sequence[TurnVerifier[CalendarScenario]], Sequence[FinalVerifier[CalendarScenario]]]:
    turn, final = calendar_verifiers(scenario)
    return turn, [*final, StableCalendar()]


REWARD = final_only(combine="min")

SCENARIOS = [
    CalendarScenario(
        id="stable-day",
        goal=CalendarGoal(
            steps=(
                GoalStep(action="add", event_id=0, name="Standup", duration=15),
                GoalStep(action="add", event_id=1, name="Design review", duration=60),
                GoalStep(action="constrain", event_id=1, constraint="after 1pm"),
            )
        ),
    ),
    CalendarScenario(
        id="reshuffled-day",
        goal=CalendarGoal(
            steps=(
                GoalStep(action="add", event_id=0, name="Planning", duration=90),
                GoalStep(action="add", event_id=1, name="Lunch", duration=60),
                GoalStep(action="constrain", event_id=1, constraint="before 11:30am"),
            )
        ),
    ),
]
