"""The `rollouts-memory` suite: peak RSS of `convo-sim run` against the number of rollouts it writes.

    .venv/bin/python benchmarks/run.py --only rollouts-memory

`convo-sim run --samples S` with the offline default (the ten bundled
calendar scenarios, the rule-based actors and verifiers, progress line
on) writes 10 x S rollouts; S = 1,000 and 10,000 give 10,000 and 100,000
rollouts. Each run is a fresh process writing a fresh file in a
temporary folder; its peak RSS is the process's `ru_maxrss` (from
`wait4`). Target: the two peaks within 10% of each other (memory does not
grow with the rollouts written). Before this suite existed, `convo-sim run`
kept about 48 KB per rollout: 1,000 rollouts 92 MB, 10,000 524 MB.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

from _process import timed

SAMPLES = (1_000, 10_000)  # x 10 bundled scenarios
SCRIPT = Path(sys.executable).with_name("convo-sim")


def measure(samples: int, timeout: float) -> dict[str, Any]:
    """One `convo-sim run --samples S` in a fresh process: its peak RSS and wall time."""
    with tempfile.TemporaryDirectory(prefix="convo-sim-memory-") as folder:
        out = Path(folder) / "rollouts.jsonl"
        command = [str(SCRIPT), "run", "--samples", str(samples), "--out", str(out)]
        printed = Path(folder) / "summary.txt"
        with printed.open("w") as summary_file:
            wall, rss, code = timed(command, timeout, stdout=summary_file)
        summary = printed.read_text()
        if code != 0:
            raise RuntimeError(f"convo-sim run --samples {samples} exited {code}")
        lines = sum(1 for _ in out.open("rb"))
        size = out.stat().st_size
    return {
        "samples": samples,
        "rollouts": lines,
        "peak_rss_mb": rss,
        "wall_s": wall,
        "file_mb": size / 1e6,
        "summary_first_line": summary.splitlines()[0] if summary else "",
    }


def run(repeat: int, timeout: float) -> dict[str, Any]:
    """Each size once (they are long; `repeat` does not apply)."""
    found: dict[str, Any] = {"runs": {}, "errors": []}
    for samples in SAMPLES:
        try:
            data = measure(samples, max(timeout, 3600))
        except RuntimeError as exc:
            found["errors"].append(str(exc))
            continue
        found["runs"][str(data["rollouts"])] = data
        print(
            f"  memory     {data['rollouts']:>7} rollouts  peak RSS {data['peak_rss_mb']:7.1f} MB  "
            f"{data['wall_s']:7.1f} s  file {data['file_mb']:.0f} MB",
            file=sys.stderr,
            flush=True,
        )
    return found


def _ratio(found: dict[str, Any]) -> float | None:
    runs = list(found["runs"].values())
    if len(runs) != len(SAMPLES):
        return None
    small, large = sorted(runs, key=lambda d: d["rollouts"])
    return float(large["peak_rss_mb"] / small["peak_rss_mb"])


def table(found: dict[str, Any]) -> list[str]:
    lines = [
        "#### Peak RSS of `convo-sim run` against rollouts written (`rollouts-memory`)",
        "",
        "| rollouts | peak RSS MB | wall s | file MB | summary |",
        "|---:|---:|---:|---:|---|",
    ]
    for d in found["runs"].values():
        lines.append(
            f"| {d['rollouts']:,} | {d['peak_rss_mb']:.1f} | {d['wall_s']:.1f} "
            f"| {d['file_mb']:.0f} | `{d['summary_first_line']}` |"
        )
    lines += [f"| failed: {e[:200]} |" for e in found["errors"]]
    return [*lines, ""]


def targets(found: dict[str, Any]) -> list[tuple[str, bool, str]]:
    ratio = _ratio(found)
    if ratio is None:
        return []
    return [("rollouts memory: peak RSS 100,000 <= 1.1 x 10,000", ratio <= 1.1, f"{ratio:.3f}")]


def failed(found: dict[str, Any]) -> bool:
    return bool(found["errors"])


def as_json(found: dict[str, Any]) -> dict[str, Any]:
    return {**found["runs"], "ratio": _ratio(found)}
