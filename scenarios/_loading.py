"""A domain's scenarios by file or by bundled set, with the domain named."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from convo_sim.domains import Domain
from convo_sim.domains._registry import resolve

__all__ = ["bundled_scenarios", "load_scenarios"]


def load_scenarios(path: str | Path, *, domain: str | Domain[Any] = "calendar") -> list[Any]:
    """Read every scenario in a file, in any format `domain` reads.

    Raises:
        UnknownDomainError: no domain has that name.
        ScenarioError: the file cannot be read, or a record is malformed;
            `exc.path` and `exc.line` say where.
    """
    return resolve(domain).load(Path(path))


def bundled_scenarios(
    name: str | None = None, *, domain: str | Domain[Any] = "calendar"
) -> list[Any]:
    """A scenario set shipped with `domain` (default: its default sets, what `convo-sim run` runs).

    Raises:
        UnknownDomainError: no domain has that name.
        InputError: the domain bundles no set of that name.
        ScenarioError: the bundled file is malformed (a broken install).
    """
    return resolve(domain).scenarios(None if name is None else [name])
