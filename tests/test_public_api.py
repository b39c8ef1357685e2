"""The public surface: every package's `__all__`, the old names' aliases, and the docs' imports."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path
from types import ModuleType

import pytest

import convo_sim

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PACKAGES = [
    "convo_sim",
    "convo_sim.domains",
    "convo_sim.domains.calendar",
    "convo_sim.agents",
    "convo_sim.users",
    "convo_sim.verifiers",
    "convo_sim.scenarios",
    "convo_sim.backends",
    "convo_sim.server",
    "convo_sim.testing",
    "convo_sim.openai_model",
    "convo_sim.integrations",
    "convo_sim.integrations.nemo_gym",
    "convo_sim.integrations.skyrl",
    "convo_sim.integrations.trainers",
    # convo_sim.integrations.verifiers needs the verifiers extra, and from the
    # source tree the family folder verifiers/ shadows that package
    # (tests/test_verifiers.py imports it from a scratch directory).
]
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
# Old name -> (package it was imported from, the domain's name for it).
ALIASES = {
    ("convo_sim.agents", "CalendarSolverAssistant"): "CalendarSolverAssistant",
    ("convo_sim.users", "CalendarUser"): "CalendarUser",
    ("convo_sim.users", "PersonaCalendarUser"): "PersonaCalendarUser",
    ("convo_sim.users", "UserFidelity"): "UserFidelity",
    ("convo_sim.users", "user_fidelity"): "user_fidelity",
    ("convo_sim.verifiers", "calendar_verifiers"): "calendar_verifiers",
    ("convo_sim.verifiers", "CalendarFinalVerifier"): "CalendarFinalVerifier",
    ("convo_sim.verifiers", "ValidCalendar"): "ValidCalendar",
    ("convo_sim.verifiers", "NoConflicts"): "NoConflicts",
    ("convo_sim.verifiers", "EventsPresent"): "EventsPresent",
    ("convo_sim.verifiers", "ConstraintsHonoured"): "ConstraintsHonoured",
    ("convo_sim.verifiers", "grade_calendar_response"): "grade_calendar_response",
    ("convo_sim.scenarios", "generate_calendar_scenarios"): "generate_scenarios",
    ("convo_sim.scenarios", "CalendarGoal"): "CalendarGoal",
    ("convo_sim.scenarios", "GoalStep"): "GoalStep",
    ("convo_sim.scenarios", "default_user"): "default_user",
    ("convo_sim.scenarios", "CALENDAR_SYSTEM_PROMPT"): "CALENDAR_SYSTEM_PROMPT",
    ("convo_sim.scenarios", "nemo_scenario"): "nemo_scenario",
    ("convo_sim.calendar", "parse_time"): "parse_time",
    ("convo_sim.calendar", "ExpectedState"): "ExpectedState",
}
# Names a package holds that are no API of its own (typing helpers, the
# version, the lazy-import machinery).
NOT_API = {"annotations", "TYPE_CHECKING", "Any"}


@pytest.mark.parametrize("package", PACKAGES)
def test_all_is_complete_and_importable(package: str) -> None:
    module = importlib.import_module(package)
    names = module.__all__
    assert len(set(names)) == len(names), package
    for name in names:
        assert getattr(module, name) is not None, f"{package}.{name}"
    public = {
        n
        for n, value in vars(module).items()
        if not n.startswith("_")
        and not isinstance(value, ModuleType)
        and n not in NOT_API
        # A package's namespace is its API; a module's, what it defines.
        and (hasattr(module, "__path__") or getattr(value, "__module__", None) == package)
    }
    assert public <= set(names), public - set(names)


def test_the_core_exports_the_design_names() -> None:
    for name in DESIGN_NAMES:
        assert name in convo_sim.__all__


@pytest.mark.parametrize(("old", "new"), ALIASES.items(), ids=lambda v: str(v))
def test_old_names_are_aliases_of_the_domains(old: tuple[str, str], new: str) -> None:
    from convo_sim.domains import calendar

    package, name = old
    assert getattr(importlib.import_module(package), name) is getattr(calendar, new)
    # `from package import name` works too (it goes through the module's __getattr__).
    namespace: dict[str, object] = {}
    exec(f"from {package} import {name} as found", namespace)
    assert namespace["found"] is getattr(calendar, new)


def test_an_unknown_name_is_still_an_attribute_error() -> None:
    for package in ("convo_sim.agents", "convo_sim.scenarios", "convo_sim.calendar"):
        module = importlib.import_module(package)
        assert not hasattr(module, "Nope")
        with pytest.raises(AttributeError, match="no attribute 'Nope'"):
            module.__getattr__("Nope")


def test_termination_reasons_are_the_designed_set() -> None:
    assert {r.value for r in convo_sim.TerminationReason} == {
        "user_stop",
        "assistant_stop",
        "goal_reached",
        "max_turns",
        "max_steps",
        "turn_timeout",
        "assistant_error",
        "user_error",
        "cancelled",
    }


def python_blocks(path: Path) -> list[tuple[int, str]]:
    """The ```python blocks of a Markdown file, with the line each starts on."""
    text = path.read_text(encoding="utf-8")
    return [
        (text.count("\n", 0, m.start()) + 2, m.group(1))
        for m in re.finditer(r"```python\n(.*?)```", text, re.S)
    ]


def doc_imports(source: str) -> list[tuple[str, str | None]]:
    tree = ast.parse(source)
    out: list[tuple[str, str | None]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            out += [(node.module, alias.name) for alias in node.names]
    return out


def test_the_docs_have_python_blocks() -> None:
    assert sum(len(python_blocks(path)) for path in DOCS) >= 8


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_the_docs_import_only_public_names(path: Path) -> None:
    for line, block in python_blocks(path):
        for module, name in doc_imports(block):
            where = f"{path.name}:{line}: {module}"
            if not module.startswith("convo_sim"):
                continue
            assert not any(part.startswith("_") for part in module.split(".")), where
            assert not module.startswith("convo_sim.cli"), where
            package = importlib.import_module(module)
            if name is not None:
                assert name in package.__all__, f"{where}.{name} is not in its __all__"
