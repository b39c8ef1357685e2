"""The core imports no domain: checked on the source, and on what importing loads.

The core is `convo_sim/` outside `domains/<name>/` and `cli/`, plus the
generic families (`agents/`, `users/`, `verifiers/`, `scenarios/`, which
install under `convo_sim`). It may use the registry (`convo_sim.domains`:
`Domain`, `get`, `names`), never a domain's package, not even lazily inside
a function. The compatibility aliases of the calendar's old names are the
only exceptions, listed here by file.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import convo_sim.domains

ROOT = Path(__file__).resolve().parents[1]
FAMILIES = ("agents", "users", "verifiers", "scenarios")

# Old names kept importable (`convo_sim.agents.CalendarSolverAssistant`, ...):
# lazy `__getattr__` aliases that import `convo_sim.domains.calendar` on first use.
COMPAT_SHIMS = frozenset(
    {
        "convo_sim/calendar/__init__.py",
        "agents/__init__.py",
        "users/__init__.py",
        "verifiers/__init__.py",
        "scenarios/__init__.py",
    }
)
# What the core may import from `convo_sim.domains`: the seam, not a domain.
SEAM = frozenset({"convo_sim.domains", "convo_sim.domains._domain", "convo_sim.domains._registry"})


def core_files() -> list[Path]:
    files = [
        path
        for path in (ROOT / "convo_sim").rglob("*.py")
        if path.relative_to(ROOT / "convo_sim").parts[0] not in ("cli", "domains")
    ]
    for family in FAMILIES:
        files += (ROOT / family).rglob("*.py")
    # The example scripts are users' code for the calendar domain, shipped as data.
    examples = ROOT / "scenarios" / "examples"
    return sorted(path for path in files if examples not in path.parents)


def domain_imports(source: str) -> list[tuple[int, str]]:
    """Every import of a domain package in `source`, wherever it stands (functions too)."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        modules: list[str] = []
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules = [node.module]
            if node.module == "convo_sim.domains":
                # `from convo_sim.domains import calendar` imports the package;
                # the seam's own names (`Domain`, `get`, ...) are no module.
                modules += [
                    f"convo_sim.domains.{alias.name}"
                    for alias in node.names
                    if alias.name not in convo_sim.domains.__all__
                ]
        for module in modules:
            if _is_domain(module):
                found.append((node.lineno, module))
    return found


def _is_domain(module: str) -> bool:
    parts = module.split(".")
    return parts[:2] == ["convo_sim", "domains"] and ".".join(parts[:3]) not in SEAM


def test_the_analysis_finds_an_import_wherever_it_hides() -> None:
    source = """
from convo_sim.domains import Domain, get
from convo_sim.domains._registry import resolve

def late():
    from convo_sim.domains.calendar import DOMAIN
    import convo_sim.domains.calendar._user
    from convo_sim.domains import calendar

class Late:
    def method(self):
        from convo_sim.domains.support._model import Ticket
"""
    assert [module for _, module in domain_imports(source)] == [
        "convo_sim.domains.calendar",
        "convo_sim.domains.calendar._user",
        "convo_sim.domains.calendar",
        "convo_sim.domains.support._model",
    ]


def test_the_core_and_the_families_import_no_domain() -> None:
    files = core_files()
    assert len(files) > 40  # the walk really covers the core
    offenders = []
    for path in files:
        name = path.relative_to(ROOT).as_posix()
        if name in COMPAT_SHIMS:
            continue
        offenders += [
            f"{name}:{line}: {module}" for line, module in domain_imports(path.read_text())
        ]
    assert offenders == []


def test_the_compat_shims_are_the_only_exceptions_and_import_lazily() -> None:
    for name in COMPAT_SHIMS:
        tree = ast.parse((ROOT / name).read_text())
        assert domain_imports((ROOT / name).read_text()), f"{name} is no longer a shim"
        # At module level only under TYPE_CHECKING (for type checkers); at run
        # time only inside `__getattr__`.
        for node in tree.body:
            if isinstance(node, ast.Import | ast.ImportFrom):
                assert not domain_imports(ast.unparse(node)), f"{name}:{node.lineno}"


@pytest.mark.timeout(60)
def test_importing_the_core_loads_no_domain() -> None:
    code = """
import sys
import convo_sim, convo_sim.agents, convo_sim.users, convo_sim.verifiers, convo_sim.scenarios
import convo_sim.server, convo_sim.testing, convo_sim.domains, convo_sim.calendar
loaded = sorted(m for m in sys.modules if m.startswith("convo_sim.domains."))
assert loaded == ["convo_sim.domains._domain", "convo_sim.domains._registry"], loaded
from convo_sim.agents import CalendarSolverAssistant  # an alias loads the domain on use
assert "convo_sim.domains.calendar" in sys.modules
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=50, check=False
    )
    assert done.returncode == 0, done.stderr
