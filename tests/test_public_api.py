from __future__ import annotations

import importlib

import pytest

import convo_sim

DESIGN_NAMES = [
    "Message",
    "Role",
    "Transcript",
    "Actor",
    "run_dialogue",
    "DialogueResult",
    "TerminationReason",
    "TurnScore",
    "Verdict",
]


def test_all_is_complete_and_importable() -> None:
    for name in convo_sim.__all__:
        assert hasattr(convo_sim, name), name
    public = {n for n in vars(convo_sim) if not n.startswith("_")}
    modules = {n for n in public if isinstance(getattr(convo_sim, n), type(importlib))}
    assert public - modules - {"annotations"} <= set(convo_sim.__all__)
    assert len(set(convo_sim.__all__)) == len(convo_sim.__all__)


@pytest.mark.parametrize("name", DESIGN_NAMES)
def test_design_names_are_exported(name: str) -> None:
    assert name in convo_sim.__all__


@pytest.mark.parametrize(
    "package", ["convo_sim.agents", "convo_sim.users", "convo_sim.verifiers", "convo_sim.scenarios"]
)
def test_family_packages_install_under_convo_sim(package: str) -> None:
    module = importlib.import_module(package)
    for name in module.__all__:
        assert hasattr(module, name), f"{package}.{name}"


def test_termination_reasons_are_the_designed_set() -> None:
    assert {r.value for r in convo_sim.TerminationReason} == {
        "user_stop",
        "assistant_stop",
        "goal_reached",
        "max_turns",
        "turn_timeout",
        "assistant_error",
        "user_error",
        "cancelled",
    }
