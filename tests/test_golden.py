"""Behaviour pinned across refactors: the calendar golden file (tests/golden/record.py)."""

from __future__ import annotations

import pytest

from tests.golden.record import GOLDEN, compute, load


@pytest.mark.timeout(300)
def test_calendar_behaviour_matches_the_golden_file() -> None:
    expected = {(r["path"], r["scenario_id"], r["sample_index"]): r for r in load()}
    actual = {(r["path"], r["scenario_id"], r["sample_index"]): r for r in compute()}
    assert actual.keys() == expected.keys(), f"rows differ from {GOLDEN}"
    changed = [key for key in expected if actual[key] != expected[key]]
    assert not changed, f"{len(changed)} rows differ from {GOLDEN}, first {changed[:3]}"
