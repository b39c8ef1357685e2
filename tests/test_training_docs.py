"""docs/training-data.md: its Python blocks run, and what it names exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import convo_sim
from convo_sim.cli import build_parser

DOC = Path(__file__).resolve().parents[1] / "docs" / "training-data.md"


@pytest.mark.timeout(60)
def test_the_python_blocks_run(capsys: pytest.CaptureFixture[str]) -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.DOTALL)
    assert len(blocks) >= 2
    namespace: dict[str, object] = {"__name__": "docs"}
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), namespace)
    assert "ExportStats(rows=4" in capsys.readouterr().out
    assert callable(namespace["rollout_func"])


def test_the_flags_and_names_it_uses_exist() -> None:
    text = DOC.read_text()
    help_text = {
        name: action.format_usage()
        for name, action in build_parser()._subparsers._group_actions[0].choices.items()  # type: ignore[union-attr]
    }
    for flag in re.findall(r"`(--[a-z-]+)", text):
        assert any(flag in usage for usage in help_text.values()), flag
    for name in ("collect", "RolloutBatch", "export_rows", "token_samples", "write_export"):
        assert name in convo_sim.__all__
