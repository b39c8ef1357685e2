"""Finding domains by name: registered objects, installed entry points, the built-ins.

A package adds a domain by naming its `Domain` object under the entry-point
group `convo_sim.domains`, in its `pyproject.toml`::

    [project.entry-points."convo_sim.domains"]
    support = "my_package.support:DOMAIN"

The built-in domains are also found without any metadata (a source
checkout whose installed metadata is stale, say). A domain that fails to
load (an import error, an object that is not a `Domain`, a name that does
not match) is logged as `domain.load_failed` and left out of `names()`, so
one broken package never hides the others; `get` of that name says why.
"""

from __future__ import annotations

import importlib.metadata
import threading
from typing import Any

from convo_sim._errors import UnknownDomainError
from convo_sim._logging import get_logger
from convo_sim.domains._domain import Domain

__all__ = ["ENTRY_POINT_GROUP", "get", "names", "register", "resolve", "unregister"]

ENTRY_POINT_GROUP = "convo_sim.domains"
"""The entry-point group third-party packages name their domains under."""

_BUILTIN: dict[str, str] = {
    "calendar": "convo_sim.domains.calendar:DOMAIN",
    "support": "convo_sim.domains.support:DOMAIN",
}
"""Shipped with convo-sim; found even when the installed metadata lags the source."""

_log = get_logger("convo_sim.domains")
_lock = threading.RLock()
_registered: dict[str, Domain[Any]] = {}
_loaded: dict[str, Domain[Any]] = {}
_failed: dict[str, str] = {}


def register(domain: Domain[Any], *, replace: bool = False) -> None:
    """Make `domain` available by its name in this process (tests, notebooks, plugins).

    Only in this process: Ray workers, and the served models of a separate
    `convo-sim serve`, find a domain by its entry point. A domain's own
    factories travel to workers by reference and need neither.

    Raises:
        ValueError: another domain already has the name and `replace` is False.
        TypeError: `domain` is not a `Domain`.
    """
    if not isinstance(domain, Domain):
        raise TypeError(f"expected a Domain, got {type(domain).__name__}")
    with _lock:
        taken = domain.name in _registered or domain.name in _sources()
        if taken and not replace and _registered.get(domain.name) is not domain:
            raise ValueError(
                f"a domain named {domain.name!r} exists already; pass replace=True to replace it"
            )
        _registered[domain.name] = domain


def unregister(name: str) -> None:
    """Forget a domain `register` added (the installed ones come back, if any)."""
    with _lock:
        _registered.pop(name, None)


def names() -> list[str]:
    """The names of the domains that load, sorted."""
    with _lock:
        found = set(_registered)
        for name, value in _sources().items():
            if _load(name, value) is not None:
                found.add(name)
        return sorted(found)


def get(name: str) -> Domain[Any]:
    """The domain called `name`.

    Raises:
        UnknownDomainError: no domain has that name, or it failed to load
            (`exc.known` lists the ones that load).
    """
    with _lock:
        if name in _registered:
            return _registered[name]
        value = _sources().get(name)
        domain = _load(name, value) if value is not None else None
        if domain is not None:
            return domain
        raise UnknownDomainError(name, names(), reason=_failed.get(name))


def resolve(domain: str | Domain[Any]) -> Domain[Any]:
    """`domain` itself, or the domain of that name (what a `domain=` argument takes).

    Raises:
        UnknownDomainError: no domain has that name.
    """
    return domain if isinstance(domain, Domain) else get(domain)


def _sources() -> dict[str, str]:
    """Every domain's `module:attribute`, by name; the built-ins win a clash."""
    sources: dict[str, str] = {}
    try:
        points = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    except Exception as exc:  # broken metadata of some other distribution
        _log.warning("domain.discovery_failed", error=f"{type(exc).__name__}: {exc}")
        points = importlib.metadata.EntryPoints(())
    for point in points:
        if point.name in _BUILTIN and point.value != _BUILTIN[point.name]:
            _log.warning("domain.name_taken", domain=point.name, entry_point=point.value)
            continue
        sources.setdefault(point.name, point.value)
    sources.update(_BUILTIN)
    return sources


def _load(name: str, value: str) -> Domain[Any] | None:
    """The domain at `value` (`module:attribute`), loaded once; None (logged, remembered) if it fails."""
    if name in _loaded:
        return _loaded[name]
    if name in _failed:
        return None
    point = importlib.metadata.EntryPoint(name=name, value=value, group=ENTRY_POINT_GROUP)
    try:
        domain = point.load()
        if not isinstance(domain, Domain):
            raise TypeError(f"{value} is a {type(domain).__name__}, not a Domain")
        if domain.name != name:
            raise ValueError(f"{value} is named {domain.name!r}, not {name!r}")
    except Exception as exc:  # a broken plug-in must not break the others
        _failed[name] = f"{type(exc).__name__}: {exc}"
        _log.error("domain.load_failed", domain=name, entry_point=value, error=_failed[name])
        return None
    _loaded[name] = domain
    return domain
