"""Full control: `async def main()` runs the dialogues itself.

    convo-sim run --script scenarios/examples/scripted_main.py

Anything the Python API offers works here. This one plays the same scripted
user against the rule-based solver twice, once with a short turn limit, and
returns both results; the command line prints their transcripts and writes
them as rollout records.
"""

from __future__ import annotations

from convo_sim import DialogueResult, Message, run_dialogue
from convo_sim.agents import CalendarSolverAssistant
from convo_sim.scenarios import CALENDAR_SYSTEM_PROMPT
from convo_sim.users import ScriptedUser

SCRIPT = [
    'Please add "Team sync" (event id: 0) to my calendar for 30 minutes.',
    "Can the Team sync (event id: 0) start at 2pm or later?",
]


async def main() -> list[DialogueResult]:
    results = []
    for max_turns in (5, 1):
        results.append(
            await run_dialogue(
                CalendarSolverAssistant(),
                ScriptedUser(SCRIPT),
                prefix=[Message(role="system", content=CALENDAR_SYSTEM_PROMPT)],
                max_turns=max_turns,
            )
        )
    return results
