"""`convo-sim run`: run dialogues and write rollouts.

Until the calendar domain lands this runs a scripted demo dialogue.
"""

from __future__ import annotations

import argparse
from typing import Any

import anyio

from convo_sim.agents import ScriptedAssistant
from convo_sim.orchestrator import run_dialogue
from convo_sim.users import ScriptedUser


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("run", help="run dialogues and write rollouts")
    p.add_argument("--max-turns", type=int, default=10, help="turn limit per dialogue")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    async def demo() -> None:
        result = await run_dialogue(
            ScriptedAssistant(["Hello! What can I do?", "Booked it."]),
            ScriptedUser(["Hi.", "Book a 30-minute call at 2pm."]),
            max_turns=args.max_turns,
        )
        for message in result.transcript:
            print(f"{message.role:>9}: {message.content}")
        print(f"termination: {result.termination.value}, turns: {result.turns}")

    anyio.run(demo)
    return 0
