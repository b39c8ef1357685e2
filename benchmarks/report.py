"""The `report-100k` suite: `convo-sim report --html` at 1,000 and 100,000 rollouts.

    .venv/bin/python benchmarks/run.py --only report-100k
    .venv/bin/python benchmarks/report.py            # the same, on its own

The records are real: `convo-sim run --samples 100` writes 1,000 calendar
rollouts (the ten bundled scenarios), which are repeated under new sample
indices up to each size. For each size, `convo-sim report FILE --html OUT`
runs in a fresh process (wall time, peak RSS from `wait4`); then headless
Chromium (`/usr/bin/chromium`, or `$CHROMIUM`) opens the main page with
`--dump-dom`, which returns once the page's script has run, and a blank
page the same way: the difference is the page's own load time, Chromium's
start-up taken out. Sizes are the main page and the transcript pages.

Targets (ratios within one run; the machine may be shared): the 100,000
page opens within 5x the 1,000 page's time, Chromium's start-up included;
the main page holds at most 100 bytes per rollout (its index); the
writer's peak RSS at 100,000 is at most 3x that at 1,000.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _process import timed

SIZES = (1_000, 100_000)  # both past the one-page limit (200): paged
SCRIPT = Path(sys.executable).with_name("convo-sim")


def _chromium() -> str | None:
    return (
        os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    )


def _open(chromium: str, url: str, profile: Path) -> float:
    command = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
    command += [f"--user-data-dir={profile}", "--dump-dom", url]
    best = float("inf")
    for _ in range(3):  # the fastest of three: noise only ever adds time
        started = time.perf_counter()
        subprocess.run(command, capture_output=True, timeout=300, check=True)
        best = min(best, time.perf_counter() - started)
    return best


def _records(folder: Path, timeout: float) -> list[str]:
    seed = folder / "seed.jsonl"
    command = [str(SCRIPT), "run", "--samples", "100", "--no-progress", "--out", str(seed)]
    subprocess.run(command, capture_output=True, timeout=timeout, check=True)
    return seed.read_text(encoding="utf-8").splitlines()


def _write(lines: list[str], count: int, path: Path) -> None:
    with path.open("w", encoding="utf-8") as out:
        for i in range(count):
            record = json.loads(lines[i % len(lines)])
            record["sample_index"] = i  # a new sample: the report shows each once
            out.write(json.dumps(record) + "\n")


def _folder_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.glob("*")) / 1e6 if folder.is_dir() else 0.0


def run(repeat: int, timeout: float) -> dict[str, Any]:
    """Each size once (they are long; `repeat` does not apply)."""
    found: dict[str, Any] = {"runs": {}, "errors": []}
    chromium = _chromium()
    with tempfile.TemporaryDirectory(prefix="convo-sim-report-") as name:
        folder = Path(name)
        lines = _records(folder, max(timeout, 600))
        blank = folder / "blank.html"
        blank.write_text("<!DOCTYPE html><title>blank</title>", encoding="utf-8")
        start_up = _open(chromium, blank.as_uri(), folder / "p0") if chromium else None
        for size in SIZES:
            rollouts, page = folder / f"r{size}.jsonl", folder / f"report{size}.html"
            _write(lines, size, rollouts)
            command = [str(SCRIPT), "report", str(rollouts), "--html", str(page)]
            try:
                wall, rss, code = timed(command, max(timeout, 3600))
            except RuntimeError as exc:
                found["errors"].append(str(exc))
                continue
            if code != 0:
                found["errors"].append(f"convo-sim report ({size}) exited {code}")
                continue
            data: dict[str, Any] = {
                "rollouts": size,
                "write_s": wall,
                "peak_rss_mb": rss,
                "rollouts_file_mb": rollouts.stat().st_size / 1e6,
                "page_mb": page.stat().st_size / 1e6,
                "transcripts_mb": _folder_mb(folder / f"report{size}_transcripts"),
            }
            if chromium and start_up is not None:
                opened = _open(chromium, page.as_uri(), folder / f"p{size}")
                data["open_s"] = opened
                data["open_minus_startup_s"] = max(opened - start_up, 0.0)
                first = folder / f"report{size}_transcripts" / "page-00001.html"
                if first.is_file():  # one page of transcripts, as a row's link opens it
                    data["open_transcripts_s"] = _open(chromium, first.as_uri(), folder / "pt")
            found["runs"][str(size)] = data
            print(
                f"  report     {size:>7} rollouts  write {wall:6.1f} s  RSS {rss:7.1f} MB  "
                f"page {data['page_mb']:6.2f} MB  transcripts {data['transcripts_mb']:7.1f} MB  "
                f"open {data.get('open_s', float('nan')):5.2f} s",
                file=sys.stderr,
                flush=True,
            )
        found["chromium_startup_s"] = start_up
    return found


def table(found: dict[str, Any]) -> list[str]:
    lines = [
        "#### `convo-sim report --html` against rollouts (`report-100k`)",
        "",
        f"Chromium start-up (a blank page): {found.get('chromium_startup_s') or float('nan'):.2f} s",
        "",
        "| rollouts | write s | peak RSS MB | rollouts file MB | main page MB "
        "| transcript pages MB | open s (minus start-up) | open one transcript page s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for d in found["runs"].values():
        lines.append(
            f"| {d['rollouts']:,} | {d['write_s']:.1f} | {d['peak_rss_mb']:.0f} "
            f"| {d['rollouts_file_mb']:.0f} | {d['page_mb']:.2f} | {d['transcripts_mb']:.0f} "
            f"| {d.get('open_s', float('nan')):.2f} ({d.get('open_minus_startup_s', float('nan')):.2f}) "
            f"| {d.get('open_transcripts_s', float('nan')):.2f} |"
        )
    lines += [f"| failed: {e[:200]} |" for e in found["errors"]]
    return [*lines, ""]


def targets(found: dict[str, Any]) -> list[tuple[str, bool, str]]:
    runs = found["runs"]
    if len(runs) != len(SIZES):
        return []
    small, large = runs[str(SIZES[0])], runs[str(SIZES[1])]
    checks = [
        (
            # The index has a row per rollout, so the page grows with them, by little.
            "report: main page <= 100 bytes per rollout at 100,000",
            large["page_mb"] * 1e6 / SIZES[1] <= 100,
            f"{large['page_mb'] * 1e6 / SIZES[1]:.0f} B",
        ),
        (
            "report: writer peak RSS 100,000 <= 3 x 1,000",
            large["peak_rss_mb"] <= 3 * small["peak_rss_mb"],
            f"{large['peak_rss_mb'] / small['peak_rss_mb']:.2f}",
        ),
    ]
    if "open_s" in large and "open_s" in small:
        checks.append(
            (
                "report: opening the 100,000 page <= 5 x the 1,000 page",
                large["open_s"] <= 5 * small["open_s"],
                f"{large['open_s'] / small['open_s']:.2f}",
            )
        )
    return checks


def failed(found: dict[str, Any]) -> bool:
    return bool(found["errors"])


def as_json(found: dict[str, Any]) -> dict[str, Any]:
    return found


if __name__ == "__main__":
    outcome = run(1, 3600)
    print("\n".join(table(outcome)))
    for name, ok, value in targets(outcome):
        print(f"{'PASS' if ok else 'FAIL'}  {name}: {value}")
    sys.exit(1 if failed(outcome) else 0)
