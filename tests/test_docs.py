"""Every code block in README.md and docs/ that a reader would run, run as written.

Each Python block is saved as a file and run by a fresh interpreter in a
scratch directory (a block may write `rollouts.jsonl` or register a
domain), exactly as a reader who pastes it into `example.py` would: a
block with a top-level `await` is a SyntaxError there, and fails here.
The blocks that need what a reader brings run against what the repository
has instead: the OpenAI block against the bundled server (a model of the
same name, through `OPENAI_BASE_URL`), the scenario-file block against the
YAML example of docs/scenarios.md. Every JSON scenario record shown in
docs/scenarios.md loads, one record per line as in a `.jsonl` file.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from convo_sim._served_models import default_models
from convo_sim.domains.calendar import load_scenarios
from convo_sim.server import ServerThread

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SCENARIOS_DOC = ROOT / "docs" / "scenarios.md"
# A substring of the block -> what the reader brings, and what stands in for it.
NEEDS_OPENAI = 'OpenAIChatModel("gpt-4o-mini"'
NEEDS_FILE = 'load_scenarios("my_scenarios.yaml")'


def fenced(path: Path, language: str) -> list[tuple[str, str]]:
    text = path.read_text(encoding="utf-8")
    found = []
    for match in re.finditer(rf"```{language}\n(.*?)```", text, re.S):
        line = text.count("\n", 0, match.start()) + 2
        found.append((f"{path.name}:{line}", match.group(1)))
    return found


BLOCKS = [block for path in DOCS for block in fenced(path, "python")]


def test_the_docs_hold_the_blocks_this_runs() -> None:
    assert len(BLOCKS) >= 8
    for needle in (NEEDS_OPENAI, NEEDS_FILE):
        assert any(needle in source for _, source in BLOCKS), f"stale entry {needle!r}"


def run_block(source: str, where: str, folder: Path, env: dict[str, str]) -> None:
    script = folder / "example.py"
    script.write_text(source, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
        env=env,
    )
    assert done.returncode == 0, f"{where}\n{done.stderr[-3000:]}"


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("where", "source"), BLOCKS, ids=[where for where, _ in BLOCKS])
def test_a_python_block_runs_as_a_file(where: str, source: str, tmp_path: Path) -> None:
    compile(source, where, "exec")  # no top-level await: it must run as a file
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    if NEEDS_FILE in source:
        (yaml,) = [s for _, s in fenced(SCENARIOS_DOC, "yaml") if "scenarios:" in s]
        (tmp_path / "my_scenarios.yaml").write_text(yaml, encoding="utf-8")
    if NEEDS_OPENAI in source:
        # The same model name, served by the bundled server: echo stands in.
        models = {**default_models(), "gpt-4o-mini": default_models()["echo"]}
        with ServerThread(models=models) as server:
            env |= {"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "not-a-key"}
            run_block(source, where, tmp_path, env)
        return
    run_block(source, where, tmp_path, env)


def scenario_records() -> list[tuple[str, str]]:
    records = []
    for where, block in fenced(SCENARIOS_DOC, "json"):
        first = json.loads(block.splitlines()[0])
        if "id" in first:  # a scenario record (the steps block shows steps alone)
            records.append((where, block))
    return records


@pytest.mark.parametrize(("where", "block"), scenario_records())
def test_a_scenario_record_of_the_docs_loads_as_jsonl(
    where: str, block: str, tmp_path: Path
) -> None:
    path = tmp_path / "doc.jsonl"
    path.write_text(block, encoding="utf-8")
    assert len(load_scenarios(path)) == len(block.strip().splitlines()), where


def test_the_docs_show_every_scenario_format() -> None:
    assert len(scenario_records()) >= 2  # native and seed records
