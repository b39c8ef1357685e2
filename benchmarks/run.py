"""convo-sim benchmarks: the HTTP path against a bare aiohttp loop, and in-process throughput.

    .venv/bin/python benchmarks/run.py                      # every suite, one table
    .venv/bin/python benchmarks/run.py --only http-0ms,scripted --repeat 1

Suites (see benchmarks/README.md for the targets):

    http-0ms    convo-sim serve --canned, no latency:  N=200 K=5 C=64
    http-50ms   convo-sim serve --canned, 50 ms:       N=500 K=5 C=256
    scale-10k   convo-sim serve --canned, 50 ms:       N=10000 K=5 C=10000
    scale-100k  convo-sim serve --canned, 50 ms:       N=100000 K=5 C=100000 (lean-pool, once)
    scripted    in process, scripted actors:           N=4000 K=5 C=64
    calendar    in process, rule-based calendar actors, turn + final verifiers: N=1000 C=64
                (`calendar`: CalendarSolverAssistant + CalendarUser; `calendar-unverified`:
                the same without verifiers; `calendar-cli`: what `convo-sim run` wires,
                whose user plays the persona the scenario names)
    replicas    4 canned servers with prefix caches, one ModelPool, by affinity and by
                round robin (see benchmarks/replicas.py)
    rollouts-memory  peak RSS of `convo-sim run` writing 10,000 and 100,000 rollouts
                (see benchmarks/memory.py)
    report-100k `convo-sim report --html` at 1,000 and 100,000 rollouts: write time, RSS,
                page sizes, Chromium open time (see benchmarks/report.py)

HTTP suites compare (a) `baseline`: a bare aiohttp loop, (b) `lean`:
open_rollouts with LLMAssistant + LLMUser over OpenAIChatModel's lean
transport, with open_rollouts' defaults, and `sdk`: the same over the
openai SDK, for reference (`lean-aiohttp`: `lean` with aiohttp's client
in place of its keep-alive pool, the other candidate for the transport;
`lean-untuned`: `lean` with `tune_gc=False`, the collector left at its
defaults; `lean-direct`: the LLM actors in N `run_dialogue` tasks started
at once, the orchestrator without the engine; `lean-pool`: `lean` through a
`ModelPool` over the one server admitting 1000 requests at once, with no
turn timeout, which 100,000 dialogues at once need). The server runs in its own process; every measurement runs in a fresh process,
so peak RSS (`ru_maxrss`) is that measurement's alone. With `--repeat R`
each measurement runs R times and the best (least wall time) is kept:
noise from other processes only ever adds time.

Everything talks to 127.0.0.1 only and every process has a time limit.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the suites below, also when run from elsewhere

import memory  # noqa: E402
import replicas  # noqa: E402
import report  # noqa: E402

EXTRA: dict[str, Any] = {"replicas": replicas, "rollouts-memory": memory, "report-100k": report}
"""Suites with servers and processes of their own: `run(repeat, timeout)`, `table`,
`targets`, `as_json` and `failed` on their outcome."""
SERVE = "import sys; from convo_sim.cli import main; sys.exit(main())"
MAX_RSS_BYTES = 1.5e9


@dataclass(frozen=True)
class Suite:
    name: str
    title: str
    latency_ms: float | None  # None: in process, no server
    n: int
    k: int
    c: int
    variants: tuple[str, ...]
    timeout: float = 0.0  # seconds per process, when more than --timeout


SUITES = [
    Suite(
        "http-0ms",
        "HTTP, no latency",
        0.0,
        200,
        5,
        64,
        ("baseline", "lean", "lean-aiohttp", "sdk"),
    ),
    Suite(
        "http-50ms",
        "HTTP, 50 ms latency",
        50.0,
        500,
        5,
        256,
        ("baseline", "lean", "lean-aiohttp", "lean-untuned", "sdk"),
    ),
    Suite(
        "scale-10k",
        "10,000 concurrent dialogues, 50 ms latency",
        50.0,
        10_000,
        5,
        10_000,
        ("lean-direct", "lean"),
    ),
    Suite(
        "scale-100k",
        "100,000 concurrent dialogues, 50 ms latency",
        50.0,
        100_000,
        5,
        100_000,
        ("lean-pool",),
        timeout=3600,
    ),
    Suite("scripted", "In process, scripted actors", None, 4000, 5, 64, ("scripted",)),
    Suite(
        "calendar",
        "In process, calendar actors + verifiers",
        None,
        1000,
        20,
        64,
        ("calendar", "calendar-unverified", "calendar-cli"),
    ),
]
# Slow or heavy: run once whatever --repeat says.
ONCE = {"sdk", "lean@scale-10k", "lean-direct@scale-10k", "lean-pool@scale-100k"}


@dataclass
class Result:
    suite: Suite
    variant: str
    data: dict[str, Any]
    runs: int = 1
    errors: list[str] = field(default_factory=list)
    walls: list[float] = field(default_factory=list)

    @property
    def median_wall(self) -> float:
        return statistics.median(self.walls)

    @property
    def turns_per_s(self) -> float:
        return float(self.data["turns"]) / float(self.data["wall_s"])

    @property
    def cpu_ms_per_turn(self) -> float:
        return 1000 * float(self.data["cpu_s"]) / max(int(self.data["turns"]), 1)

    @property
    def rss_mb(self) -> float:
        return float(self.data["maxrss_kb"]) / 1024


# -- worker side ---------------------------------------------------------------------


def worker(spec: dict[str, Any]) -> None:
    """Run one measurement in this process and print it as one JSON line."""
    import anyio
    import workloads

    kind = spec["variant"]
    if kind == "baseline":
        run = lambda: workloads.baseline(spec["url"], spec["n"], spec["k"], spec["c"])  # noqa: E731
    elif kind in ("lean", "sdk", "lean-untuned", "lean-aiohttp", "lean-pool"):
        run = lambda: workloads.rollouts_http(  # noqa: E731
            spec["url"],
            spec["n"],
            spec["k"],
            spec["c"],
            kind.removesuffix("-untuned").removesuffix("-pool"),
            tune_gc=not kind.endswith("-untuned"),
            admission=1000 if kind.endswith("-pool") else None,
        )
    elif kind == "lean-direct":
        run = lambda: workloads.dialogues_http(  # noqa: E731
            spec["url"], spec["n"], spec["k"], "lean"
        )
    elif kind.startswith("replicas-"):
        run = lambda: replicas.workload(  # noqa: E731
            spec["urls"], spec["n"], spec["k"], spec["c"], kind.removeprefix("replicas-")
        )
    elif kind == "scripted":
        run = lambda: workloads.scripted(spec["n"], spec["k"], spec["c"])  # noqa: E731
    elif kind.startswith("calendar"):
        run = lambda: workloads.calendar(  # noqa: E731
            spec["n"],
            spec["c"],
            spec["k"],
            personas=kind == "calendar-cli",
            verify=kind != "calendar-unverified",
        )
    else:
        raise SystemExit(f"unknown variant {kind!r}")
    outcome = anyio.run(run)
    outcome = outcome if isinstance(outcome, dict) else outcome.as_dict()
    outcome["maxrss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps(outcome), flush=True)


# -- driver side ---------------------------------------------------------------------


@contextmanager
def canned_server(latency_ms: float, timeout: float, text: str | None = None) -> Iterator[str]:
    """`convo-sim serve --canned [TEXT]` in its own process; yields its base URL."""
    command = [sys.executable, "-c", SERVE, "serve", "--port", "0", "--canned"]
    command += [text] if text is not None else []
    command += ["--latency-ms", str(latency_ms)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + timeout
        line = process.stdout.readline()  # "convo-sim serve: http://127.0.0.1:PORT/v1 (...)"
        if not line.startswith("convo-sim serve: http://127.0.0.1:") or time.monotonic() > deadline:
            raise RuntimeError(f"the canned server did not start: {line!r}")
        yield line.split()[2]
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def measure(suite: Suite, variant: str, url: str | None, timeout: float) -> dict[str, Any]:
    spec = {"variant": variant, "url": url, "n": suite.n, "k": suite.k, "c": suite.c}
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, cwd=HERE, check=False
    )
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-3:]
        raise RuntimeError(f"{suite.name}/{variant} exited {done.returncode}: {' | '.join(tail)}")
    data: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return data


def run_suite(suite: Suite, repeat: int, timeout: float) -> list[Result]:
    results = {v: Result(suite, v, {}, runs=0) for v in suite.variants}

    def once(url: str | None) -> None:
        for variant in suite.variants:
            result = results[variant]
            if result.runs and (variant in ONCE or f"{variant}@{suite.name}" in ONCE):
                continue
            try:
                data = measure(suite, variant, url, max(timeout, suite.timeout))
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                result.errors.append(str(exc))
                continue
            result.runs += 1
            result.walls.append(data["wall_s"])
            if not result.data or data["wall_s"] < result.data["wall_s"]:
                result.data = data
            print(
                f"  {suite.name:<10} {variant:<19} {data['turns']:>7} turns "
                f"{data['wall_s']:8.3f} s  {data['turns'] / data['wall_s']:9.0f} turns/s  "
                f"{1000 * data['cpu_s'] / max(data['turns'], 1):7.3f} CPU ms/turn  "
                f"{data['maxrss_kb'] / 1024:7.1f} MB  failures {data['failures']}",
                file=sys.stderr,
                flush=True,
            )

    # The variants alternate within each repetition, so slow spells of a
    # shared machine hit them alike.
    for _ in range(repeat):
        if suite.latency_ms is None:
            once(None)
        else:
            with canned_server(suite.latency_ms, timeout=60) as url:
                once(url)
    return list(results.values())


def ideal_wall(suite: Suite) -> float | None:
    """The wall time with a free client and server: waves x turns x 2 calls x latency."""
    if not suite.latency_ms:
        return None
    return math.ceil(suite.n / suite.c) * suite.k * 2 * suite.latency_ms / 1000


# -- report ----------------------------------------------------------------------------


def table(suite: Suite, results: list[Result]) -> list[str]:
    base = next((r for r in results if r.variant == "baseline" and r.data), None)
    ideal = ideal_wall(suite)
    lines = [
        f"#### {suite.title} (`{suite.name}`: N={suite.n}, K={suite.k}, C={suite.c})",
        "",
        "| variant | dialogues | most at once | turns | failures | wall s | median wall s "
        "| turns/s | CPU ms/turn | peak RSS MB | turns/s vs baseline | wall vs baseline "
        "| wall vs ideal |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        if not r.data:
            lines.append(f"| {r.variant} | failed: {'; '.join(r.errors)[:200]} |")
            continue
        d = r.data
        vs_base = f"{r.turns_per_s / base.turns_per_s:.2f}" if base else "-"
        wall_base = f"{d['wall_s'] / base.data['wall_s']:.2f}" if base else "-"
        vs_ideal = f"{d['wall_s'] / ideal:.2f} (ideal {ideal:.2f} s)" if ideal else "-"
        reward = f" (mean reward {d['reward']:.3f})" if d.get("reward") is not None else ""
        lines.append(
            f"| {r.variant}{reward} | {d['dialogues']} | {d['peak_in_flight']} "
            f"| {d['turns']} | {d['failures']} "
            f"| {d['wall_s']:.3f} | {r.median_wall:.3f} ({r.runs} runs) "
            f"| {r.turns_per_s:,.0f} | {r.cpu_ms_per_turn:.3f} "
            f"| {r.rss_mb:.0f} | {vs_base} | {wall_base} | {vs_ideal} |"
        )
    return [*lines, ""]


def targets(
    results: dict[str, list[Result]], extra: list[tuple[str, bool, str]] | None = None
) -> list[str]:
    def get(suite: str, variant: str) -> Result | None:
        found = [r for r in results.get(suite, []) if r.variant == variant and r.data]
        return found[0] if found else None

    checks: list[tuple[str, bool | None, str]] = []
    # The transport the adapter uses (`lean`) must meet the bounds; the other
    # candidate (`lean-aiohttp`) is measured against the same ones.
    for variant in ("lean", "lean-aiohttp"):
        base, lean = get("http-0ms", "baseline"), get("http-0ms", variant)
        if base and lean:
            ratio = lean.turns_per_s / base.turns_per_s
            name = f"HTTP 0 ms: {variant} >= 0.9 x baseline turns/s"
            checks.append((name, ratio >= 0.9, f"{ratio:.2f}"))
        base, lean = get("http-50ms", "baseline"), get("http-50ms", variant)
        if base and lean:
            ratio = lean.data["wall_s"] / base.data["wall_s"]
            name = f"HTTP 50 ms: {variant} wall <= 1.1 x baseline"
            checks.append((name, ratio <= 1.1, f"{ratio:.2f}"))
    scripted = get("scripted", "scripted")
    if scripted:
        rate = scripted.turns_per_s
        checks.append(("scripted >= 10,000 turns/s", rate >= 10_000, f"{rate:,.0f}"))
    cal = get("calendar", "calendar")
    if cal:
        rate = cal.turns_per_s
        checks.append(("calendar + verifiers >= 3,000 turns/s", rate >= 3_000, f"{rate:,.0f}"))
    scale = get("scale-10k", "lean")
    if scale:
        ok = (
            scale.data["dialogues"] == 10_000
            and scale.data["peak_in_flight"] == 10_000
            and scale.data["failures"] == 0
            and scale.data["maxrss_kb"] * 1024 <= MAX_RSS_BYTES
        )
        detail = (
            f"{scale.data['dialogues']} done ({scale.data['peak_in_flight']} at once), "
            f"{scale.data['failures']} failed, "
            f"peak RSS {scale.rss_mb:.0f} MB"
        )
        checks.append(("10k concurrent: completes, peak RSS <= 1.5 GB", ok, detail))
    huge = get("scale-100k", "lean-pool")
    if huge:
        ok = (
            huge.data["dialogues"] == 100_000
            and huge.data["peak_in_flight"] == 100_000
            and huge.data["failures"] == 0
        )
        detail = (
            f"{huge.data['dialogues']} done ({huge.data['peak_in_flight']} at once), "
            f"{huge.data['failures']} failed, peak RSS {huge.rss_mb:.0f} MB"
        )
        checks.append(("100k concurrent: completes, all at once", ok, detail))
    checks += extra or []
    lines = ["| target | result | met |", "|---|---|---|"]
    lines += [f"| {name} | {value} | {'yes' if ok else 'NO'} |" for name, ok, value in checks]
    return lines


def machine() -> str:
    model = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{os.cpu_count()} cores ({model}), Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}; load average at the end: {load}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument(
        "--only", help="comma-separated suites: " + ", ".join([*(s.name for s in SUITES), *EXTRA])
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs per measurement; best kept (default 3)"
    )
    parser.add_argument(
        "--timeout", type=float, default=300, help="seconds per process (default 300)"
    )
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    args = parser.parse_args()
    if args.worker:
        worker(json.loads(args.worker))
        return 0
    chosen = SUITES
    extra = list(EXTRA)
    if args.only:
        names = set(args.only.split(","))
        unknown = names - {s.name for s in SUITES} - set(EXTRA)
        if unknown:
            parser.error(f"unknown suites: {', '.join(sorted(unknown))}")
        chosen = [s for s in SUITES if s.name in names]
        extra = [name for name in EXTRA if name in names]
    started = time.monotonic()
    results: dict[str, list[Result]] = {}
    for suite in chosen:
        print(f"{suite.name}: {suite.title}", file=sys.stderr, flush=True)
        results[suite.name] = run_suite(suite, max(args.repeat, 1), args.timeout)
    outcomes: dict[str, Any] = {}
    for name in extra:
        print(f"{name}: {EXTRA[name].__doc__.splitlines()[0]}", file=sys.stderr, flush=True)
        outcomes[name] = EXTRA[name].run(max(args.repeat, 1), args.timeout)
    lines = [
        f"Machine: {machine()}",
        f"Command: `{' '.join(['python', *sys.argv])}` "
        f"(best of {args.repeat}; {time.monotonic() - started:.0f} s in all)",
        "",
    ]
    for suite in chosen:
        lines += table(suite, results[suite.name])
    for name, outcome in outcomes.items():
        lines += EXTRA[name].table(outcome)
    checks = [check for name, outcome in outcomes.items() for check in EXTRA[name].targets(outcome)]
    lines += targets(results, checks)
    print("\n".join(lines))
    if args.json:
        raw: dict[str, Any] = {
            name: [
                {
                    "variant": r.variant,
                    "runs": r.runs,
                    "walls": r.walls,
                    "errors": r.errors,
                    **r.data,
                }
                for r in rs
            ]
            for name, rs in results.items()
        }
        raw.update({name: EXTRA[name].as_json(outcome) for name, outcome in outcomes.items()})
        args.json.write_text(json.dumps(raw, indent=2))
    failed = any(r.errors and not r.data for rs in results.values() for r in rs)
    failed = failed or any(EXTRA[name].failed(outcome) for name, outcome in outcomes.items())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
