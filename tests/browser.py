"""Finding headless Chromium for the browser tests, and what happens without it.

Chromium is a system package (`/usr/bin/chromium` on Debian), not a Python
dependency, so the README's test command may run where there is none.
There the browser tests are skipped and the run's summary says so in a
section of its own (tests/conftest.py); with `CONVO_SIM_REQUIRE_BROWSER=1`,
which `.ci/run` sets, a missing browser fails them instead. `CHROMIUM`
names the browser to use.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

MISSING = "[chromium-missing]"
REQUIRE = "CONVO_SIM_REQUIRE_BROWSER"


def find_chromium() -> str | None:
    """The browser to drive: `$CHROMIUM` when set (used as given), else one on PATH."""
    named = os.environ.get("CHROMIUM")
    if named:
        return named if Path(named).is_file() else None
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None and Path("/usr/bin/chromium").is_file():
        found = "/usr/bin/chromium"
    return found


def chromium_path() -> str:
    """The browser, or skip (fail under `CONVO_SIM_REQUIRE_BROWSER=1`) the calling test."""
    found = find_chromium()
    if found is not None:
        return found
    message = (
        f"{MISSING} headless Chromium is needed for the HTML report tests "
        "(apt-get install chromium, or CHROMIUM=/path/to/chromium)"
    )
    if os.environ.get(REQUIRE) == "1":
        pytest.fail(f"{message}; {REQUIRE}=1 makes them mandatory", pytrace=False)
    pytest.skip(message)
