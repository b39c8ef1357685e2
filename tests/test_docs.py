"""Every Python block in README.md and docs/ runs, as a reader would paste it.

Each block runs in a fresh interpreter in a scratch directory (a block may
write `rollouts.jsonl` or register a domain), with top-level `await` allowed
for the fragments that use it. The blocks that need what a reader brings (an
API key, their own files) are listed with the reason and only compiled.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# A substring of the block -> why it is only compiled.
NOT_RUN = {
    'OpenAIChatModel("gpt-4o-mini"': "talks to OpenAI with the reader's key",
    'load_scenarios("my_scenarios.yaml")': "reads the reader's own file",
}
RUNNER = """
import ast, inspect, sys
import anyio
source = sys.stdin.read()
code = compile(source, "<doc block>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
namespace = {"__name__": "__main__"}
if code.co_flags & inspect.CO_COROUTINE:
    async def main():
        await eval(code, namespace)
    anyio.run(main)
else:
    exec(code, namespace)
"""


def blocks() -> list[tuple[str, str]]:
    found = []
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        for match in re.finditer(r"```python\n(.*?)```", text, re.S):
            line = text.count("\n", 0, match.start()) + 2
            found.append((f"{path.name}:{line}", match.group(1)))
    return found


BLOCKS = blocks()


def test_the_docs_hold_the_blocks_this_runs() -> None:
    assert len(BLOCKS) >= 8
    for needle in NOT_RUN:
        assert any(needle in source for _, source in BLOCKS), f"stale NOT_RUN entry {needle!r}"


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("where", "source"), BLOCKS, ids=[where for where, _ in BLOCKS])
def test_a_python_block_runs(where: str, source: str, tmp_path: Path) -> None:
    compile(source, where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)  # every block parses
    if any(needle in source for needle in NOT_RUN):
        return
    done = subprocess.run(
        [sys.executable, "-c", RUNNER],
        input=source,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert done.returncode == 0, f"{where}\n{done.stderr[-3000:]}"
