"""A second domain, written as a third-party package would write it: public names only.

The "shout" domain: the simulated user says the words of its goal one per
turn, and the assistant must answer each in capitals. The rule-based
assistant does; the verifiers check every turn and the final reply. The
tests register it (or name it through an entry point) to show that a
domain is one unit the CLI, scripts, `run_scenario` and the server run as
they run the calendar.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pydantic

from convo_sim import (
    Actor,
    FinalContext,
    FinalVerifier,
    Message,
    ScenarioError,
    TurnContext,
    TurnScore,
    TurnVerifier,
    Verdict,
    View,
)
from convo_sim.agents import FunctionAssistant
from convo_sim.domains import Domain
from convo_sim.scenarios import Scenario, line_of, read_records
from convo_sim.server import ActorModel, ServedModel
from convo_sim.users import ScriptedUser


class ShoutGoal(pydantic.BaseModel):
    """The words the user says, in order."""

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    words: tuple[str, ...] = pydantic.Field(min_length=1)


class ShoutScenario(Scenario[ShoutGoal, str]):
    """A shout scenario: the goal's words; the expected state is the last word, shouted."""

    def expected(self) -> str | None:
        if self.expected_state is not None:
            return self.expected_state
        return self.goal.words[-1].upper() if self.goal is not None else None


def _shout(view: View[Any]) -> str:
    return view.last.text.upper() if view.last is not None else ""


def assistant(scenario: ShoutScenario, seed: int) -> Actor:
    return FunctionAssistant(_shout)


def user(scenario: ShoutScenario, seed: int) -> Actor:
    words = scenario.goal.words if scenario.goal is not None else ()
    return ScriptedUser(words)


class Shouted:
    """1 when the reply is the user's last message in capitals."""

    name = "shouted"

    def __call__(self, ctx: TurnContext[ShoutScenario]) -> TurnScore:
        said = [m.text for m in ctx.transcript.messages if m.role == "user"]
        ok = bool(said) and ctx.message.text == said[-1].upper()
        return TurnScore(score=1.0 if ok else 0.0, reason="pass" if ok else "not_shouted")


class LastWord:
    """1 when the final reply is the scenario's expected last word."""

    name = "last_word"

    def __call__(self, ctx: FinalContext[ShoutScenario]) -> Verdict:
        wanted = ctx.scenario.expected() if ctx.scenario is not None else None
        reply = ctx.final_reply
        ok = reply is not None and reply.text == wanted
        return Verdict(reward=1.0 if ok else 0.0, reason="pass" if ok else "wrong_last_word")


def verifiers(
    scenario: ShoutScenario,
) -> tuple[Sequence[TurnVerifier[ShoutScenario]], Sequence[FinalVerifier[ShoutScenario]]]:
    return [Shouted()], [LastWord()]


def load(path: Path) -> list[ShoutScenario]:
    """Every record of a JSONL/JSON/YAML file, each an id and its words."""
    scenarios: list[ShoutScenario] = []
    for record in read_records(Path(path)):
        try:
            scenarios.append(ShoutScenario.model_validate(record.data))
        except pydantic.ValidationError as exc:
            first = exc.errors()[0]
            at = tuple(first["loc"])
            raise ScenarioError(
                f"field {'.'.join(map(str, at))!r}: {first['msg']}",
                path=path,
                line=line_of(record, at),
            ) from None
    return scenarios


def basic() -> list[ShoutScenario]:
    return [
        ShoutScenario(id="hello", goal=ShoutGoal(words=("hello", "world"))),
        ShoutScenario(id="one", goal=ShoutGoal(words=("quiet",)), max_turns=3),
    ]


def generate(n: int, *, seed: int = 0) -> list[ShoutScenario]:
    vocabulary = ("apple", "river", "stone", "cloud", "lamp")
    out = []
    for i in range(n):
        rng = random.Random(f"{seed}:{i}")
        words = tuple(rng.choice(vocabulary) for _ in range(rng.randint(1, 4)))
        out.append(ShoutScenario(id=f"shout-{seed}-{i}", goal=ShoutGoal(words=words), seed=i))
    return out


class _Shouter:
    async def reply(self, messages: Sequence[Message], body: Mapping[str, Any]) -> Message:
        last = next((m.text for m in reversed(messages) if m.role == "user"), "")
        return Message(role="assistant", content=last.upper())


def served_models() -> dict[str, ServedModel]:
    return {
        "shout-assistant": ActorModel("assistant", lambda card: (assistant_actor(), None)),
        "shout-echo": _Shouter(),
    }


def assistant_actor() -> Actor:
    return FunctionAssistant(_shout)


DOMAIN: Domain[ShoutScenario] = Domain(
    name="shout",
    description="the user says words; the assistant shouts each back",
    scenario_type=ShoutScenario,
    load=load,
    bundled={"basic": basic},
    default_sets=("basic",),
    generate=generate,
    assistant=assistant,
    user=user,
    verifiers=verifiers,
    max_turns=6,
    served_models=served_models,
)
