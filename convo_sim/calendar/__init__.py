"""Aliases of `convo_sim.domains.calendar`, kept for code written before the domain package.

`from convo_sim.calendar import X` keeps working for every public name of
the calendar domain; new code imports from `convo_sim.domains.calendar`.
The submodules (`convo_sim.calendar.model`, ...) are gone: they are private
modules of the domain package now.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    # Imported on first use, so that importing this package costs nothing.
    from convo_sim.domains import calendar

    if name in calendar.__all__:
        return getattr(calendar, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    from convo_sim.domains import calendar

    return sorted(calendar.__all__)
