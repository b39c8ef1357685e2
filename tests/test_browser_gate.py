"""The README's test command on a machine without Chromium.

The browser tests are skipped there, and the run says so in its summary;
with `CONVO_SIM_REQUIRE_BROWSER=1` (what `.ci/run` sets) they fail instead.
Both runs are real pytest processes on one browser test, with `CHROMIUM`
pointing at a browser that does not exist.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ONE_BROWSER_TEST = "tests/test_report_html.py::test_untrusted_content_is_shown_as_text_not_run"


def pytest_without_chromium(*, require: bool) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CHROMIUM": "/nonexistent/chromium"}
    env.pop("CONVO_SIM_REQUIRE_BROWSER", None)
    if require:
        env["CONVO_SIM_REQUIRE_BROWSER"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", ONE_BROWSER_TEST],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )


@pytest.mark.timeout(110)
def test_without_chromium_the_run_passes_and_says_the_browser_tests_did_not_run() -> None:
    done = pytest_without_chromium(require=False)
    assert done.returncode == 0, done.stdout[-3000:]
    assert "BROWSER TESTS DID NOT RUN" in done.stdout
    assert "1 skipped" in done.stdout


@pytest.mark.timeout(110)
def test_ci_makes_the_browser_tests_mandatory() -> None:
    done = pytest_without_chromium(require=True)
    assert done.returncode == 1, done.stdout[-3000:]
    assert "[chromium-missing]" in done.stdout


def test_ci_sets_the_requirement() -> None:
    script = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "CONVO_SIM_REQUIRE_BROWSER=1" in script
