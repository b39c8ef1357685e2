"""Tests of trainer integrations whose package (or Python) is not here say so loudly.

A missing trainer package is not a silent skip: the test warns (the warning
shows in pytest's summary) and skips with the reason; with
CONVO_SIM_REQUIRE_INTEGRATIONS=1 (as .ci/run sets it) it fails instead.
"""

from __future__ import annotations

import importlib
import os
import warnings
from types import ModuleType

import pytest


def not_run(reason: str) -> None:
    """Fail under CONVO_SIM_REQUIRE_INTEGRATIONS, else warn loudly and skip."""
    message = f"integration test NOT RUN: {reason}"
    if os.environ.get("CONVO_SIM_REQUIRE_INTEGRATIONS"):
        pytest.fail(message)
    with warnings.catch_warnings():
        # The suite turns warnings into errors; this one is only to be seen.
        warnings.simplefilter("always")
        warnings.warn(message, UserWarning, stacklevel=2)
    pytest.skip(message)


def need(module: str, extra: str) -> ModuleType:
    """The trainer's module, or `not_run` naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        not_run(f"{module} is not installed (pip install -e '.[{extra}]'; .ci/run does)")
        raise AssertionError("unreachable") from None
