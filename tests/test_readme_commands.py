"""The README's shell commands, run as written, in order, in one scratch folder.

`.venv/bin/convo-sim` there is this interpreter's `convo-sim`. Commands that
bind a port get a free one instead of 8000-8002 (another process may hold
those); the rest is verbatim. Blocks that need what a reader brings (pip,
an OpenAI key, a vLLM server, a Ray cluster: tests/test_ray_sizing.py runs
that one, the benchmarks, CI itself) are listed with the reason. The
output the README shows for `run --samples 4` must be the output, line
for line.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
NOT_RUN = {
    "pip install": "installs packages (what .ci/run does)",
    "OPENAI_API_KEY=": "talks to OpenAI with the reader's key",
    "vllm serve": "needs a GPU and a model",
    "--backend ray": "starts Ray: tests/test_ray_sizing.py runs this command",
    ".ci/": "what CI runs",
    "benchmarks/run.py": "the benchmarks, not part of the test run",
}


def shell_blocks() -> list[tuple[int, str]]:
    text = README.read_text(encoding="utf-8")
    return [
        (text.count("\n", 0, m.start()) + 2, m.group(1))
        for m in re.finditer(r"```bash\n(.*?)```", text, re.S)
    ]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def shown_output(after: str) -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(after) + len(after) + len("```")  # past the command block
    match = re.compile(r"```\n(.*?)```", re.S).search(text, start)
    assert match is not None
    return match.group(1)


@pytest.mark.timeout(300)
def test_the_readme_commands_run_as_written(tmp_path: Path) -> None:
    venv_bin = tmp_path / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    (venv_bin / "convo-sim").symlink_to(Path(sys.executable).with_name("convo-sim"))
    ran = 0
    for line, block in shell_blocks():
        if any(needle in block for needle in NOT_RUN) or ".venv/bin/convo-sim" not in block:
            continue
        for port in ("8000", "8001", "8002"):
            free = str(free_port())
            block = block.replace(f"--port {port}", f"--port {free}")
            block = block.replace(f"127.0.0.1:{port}/", f"127.0.0.1:{free}/")
        # Background servers end with the block; the reader's end when they close the shell.
        script = "set -e\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n" + block
        done = subprocess.run(
            ["bash", "-c", script],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
        assert done.returncode == 0, f"README.md:{line}\n{block}\n{done.stderr[-3000:]}"
        if "run --samples 4 --out rollouts.jsonl" in block:
            assert done.stdout == shown_output(block), done.stdout
        ran += 1
    assert ran >= 8
