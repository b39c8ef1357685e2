"""Domains: everything one task family needs, behind one `Domain` object.

`get(name)` returns an installed domain, `names()` lists them; the
calendar domain (`convo_sim.domains.calendar`) is built in. A package adds
a domain through the entry-point group `convo_sim.domains` (see
`docs/architecture.md`), or a program with `register(domain)`.
"""

from __future__ import annotations

from convo_sim._errors import UnknownDomainError
from convo_sim.domains._domain import Domain, ScenarioGenerator, ScenarioLoader
from convo_sim.domains._registry import ENTRY_POINT_GROUP, get, names, register, unregister

__all__ = [
    "ENTRY_POINT_GROUP",
    "Domain",
    "ScenarioGenerator",
    "ScenarioLoader",
    "UnknownDomainError",
    "get",
    "names",
    "register",
    "unregister",
]
