from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import structlog
from hypothesis import HealthCheck, settings

# A shared 2-core CI machine makes wall-clock deadlines flaky; the examples
# themselves are what the tests are about. CONVO_SIM_EXAMPLES=5000 hunts longer.
settings.register_profile(
    "convo_sim",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    max_examples=int(os.environ.get("CONVO_SIM_EXAMPLES", "100")),
)
settings.load_profile("convo_sim")


@pytest.fixture
def anyio_backend() -> str:
    """The event loop of async tests: asyncio, unless the module says otherwise."""
    return "asyncio"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # A module that sets `ANYIO_BACKENDS = ("asyncio", "trio")` runs each of
    # its async tests once per event loop, as anyio's own suite does.
    backends = getattr(metafunc.module, "ANYIO_BACKENDS", None)
    if backends and "anyio_backend" in metafunc.fixturenames:
        metafunc.parametrize("anyio_backend", backends)


@pytest.fixture(autouse=True)
def _fresh_structlog() -> Iterator[None]:
    """Each test starts from structlog's defaults: CLI tests that run `main()`
    in-process configure logging, which would otherwise leak into later tests."""
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    # A skipped browser test must not pass unnoticed: the README's test
    # command may run where Chromium is not installed (tests/browser.py).
    from tests.browser import MISSING, REQUIRE

    missed = [
        report
        for report in terminalreporter.stats.get("skipped", [])
        if MISSING in str(getattr(report, "longrepr", ""))
    ]
    if not missed:
        return
    terminalreporter.write_sep("!", "BROWSER TESTS DID NOT RUN", red=True, bold=True)
    terminalreporter.write_line(
        f"{len(missed)} test(s) of the HTML report need headless Chromium, which was not "
        "found: install it (apt-get install chromium) or point CHROMIUM at it. "
        f".ci/run sets {REQUIRE}=1, under which they fail instead.",
        red=True,
    )
