"""What token capture costs: client CPU per turn with capture on against off.

    .venv/bin/python benchmarks/capture.py [--n 80] [--k 8] [--c 8] [--latency-ms 50]
        [--repeat 3] [--transport lean|sdk] [--json OUT]

`convo-sim serve --canned TEXT --latency-ms MS` runs in a process of its
own and answers every request with TEXT after MS milliseconds (a model's
generation time; default 50, as `run.py`'s `http-50ms`), and its tokenizer
makes TEXT exactly 200 generated tokens (end-of-sequence included). With
`--latency-ms 0` the server's own CPU (it tokenizes in Python) bounds the
run, and the client wakes once per reply instead of once per batch of
replies, which `off` does not pay: a harsher measure than a real model
server gives. Each measurement runs in a fresh
process: `open_rollouts` with `LLMAssistant` over
`OpenAIChatModel("canned")` on the lean transport (the default) and a
scripted user in process, N dialogues of K turns, C at once, every record
built and serialised as `convo-sim run` writes it. `off` asks for text
only; `on` sets `capture_tokens=True`: the request asks for token ids and
logprobs and carries the last reply's ids back, the reply brings 200
generated ids, 200 logprobs and the prompt's ids, and the record keeps
them all and checks contiguity. A turn is the user's message and the
policy's reply (one HTTP request). CPU is the client process's
`time.process_time()` over the timed part, after 8 warm-up dialogues; the
variants alternate `--repeat` times and the least CPU of each is kept
(other load on a shared machine only ever adds to it). Target: on <= 2x off.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SERVE = "import sys; from convo_sim.cli import main; sys.exit(main())"
GENERATED = 200
SYSTEM = "You keep the user's calendar. Answer with the whole calendar after every change."
LINE = "Please add a 30 minute call with Ana after lunch, and keep the morning free."
WARMUP = 8


def canned_text() -> str:
    """A calendar-like reply that the server's tokenizer generates as exactly 200 ids."""
    from convo_sim.server import ChatTokenizer

    tokenizer = ChatTokenizer()
    sentence = (
        "Done: I added the meeting with Ana at 10:30 for 30 minutes, moved lunch to 12:00, "
        "and kept your afternoon free. Your calendar: 09:00 standup (15 minutes), "
        "10:30 meeting with Ana, 12:00 lunch, 14:00 review of the launch plan. "
    )
    text = sentence * 8
    while len(tokenizer.generation(text)) > GENERATED:
        text = text[:-1]
    assert len(tokenizer.generation(text)) == GENERATED, "pick another sentence"
    return text


# -- worker side -----------------------------------------------------------------------


async def work(spec: dict[str, Any]) -> dict[str, Any]:
    from convo_sim import RolloutPlan, open_rollouts
    from convo_sim.agents import LLMAssistant
    from convo_sim.openai_model import OpenAIChatModel
    from convo_sim.scenarios import Scenario
    from convo_sim.users import ScriptedUser

    k = spec["k"]
    lines = [f"{LINE} ({i})" for i in range(k)]
    model = OpenAIChatModel(
        "canned", base_url=spec["url"], transport=spec["transport"], capture_tokens=spec["capture"]
    )

    async def run(tag: str, count: int) -> dict[str, Any]:
        scenarios = [
            Scenario.model_validate({"id": f"{tag}{i}", "user_script": lines}) for i in range(count)
        ]
        turns = failures = broken = written = 0
        plan: RolloutPlan[Any] = RolloutPlan(
            assistant=lambda scenario, seed: LLMAssistant(model, system_prompt=SYSTEM),
            user=lambda scenario, seed: ScriptedUser(lines),
            concurrency=spec["c"],
            max_turns=k,
        )
        async with open_rollouts(scenarios, plan) as rollouts:
            async for rollout in rollouts:
                written += len(rollout.to_json_line())  # what the sink writes
                turns += rollout.turns
                failures += rollout.error is not None
                if spec["capture"]:
                    broken += rollout.contiguity is None or not rollout.contiguity.contiguous
        return {"turns": turns, "failures": failures, "broken": broken, "bytes": written}

    async with model:
        await run("warmup", WARMUP)
        cpu, wall = time.process_time(), time.perf_counter()
        outcome = await run("bench", spec["n"])
        outcome["cpu_s"] = time.process_time() - cpu
        outcome["wall_s"] = time.perf_counter() - wall
    return outcome


def worker(spec: dict[str, Any]) -> None:
    import anyio

    outcome = anyio.run(work, spec)
    outcome["maxrss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps(outcome), flush=True)


# -- driver side -----------------------------------------------------------------------


def measure(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        tail = " | ".join(done.stderr.strip().splitlines()[-3:])
        raise RuntimeError(f"worker exited {done.returncode}: {tail}")
    data: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return data


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=80, help="dialogues per measurement")
    parser.add_argument("--k", type=int, default=8, help="turns per dialogue")
    parser.add_argument("--c", type=int, default=8, help="dialogues at once")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--latency-ms", type=float, default=50.0, help="the server's delay before each reply"
    )
    parser.add_argument("--transport", choices=["lean", "sdk"], default="lean")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        worker(json.loads(args.worker))
        return 0
    text = canned_text()
    best: dict[str, dict[str, Any]] = {}
    started = time.perf_counter()
    from run import canned_server  # benchmarks/run.py, beside this file

    with canned_server(args.latency_ms, timeout=60, text=text) as url:
        for _ in range(args.repeat):
            for variant in ("off", "on"):
                spec = {
                    "url": url,
                    "n": args.n,
                    "k": args.k,
                    "c": args.c,
                    "transport": args.transport,
                    "capture": variant == "on",
                }
                data = measure(spec, args.timeout)
                per_turn = 1000 * data["cpu_s"] / max(data["turns"], 1)
                print(
                    f"  {variant:<4} {data['turns']:>6} turns  {data['wall_s']:7.2f} s wall  "
                    f"{per_turn:7.3f} CPU ms/turn  {data['bytes'] / data['turns'] / 1024:6.1f} "
                    f"KiB record/turn  failures {data['failures']}  broken {data['broken']}",
                    file=sys.stderr,
                    flush=True,
                )
                if variant not in best or data["cpu_s"] < best[variant]["cpu_s"]:
                    best[variant] = data
    off, on = best["off"], best["on"]
    ms = {v: 1000 * d["cpu_s"] / max(d["turns"], 1) for v, d in best.items()}
    ratio = ms["on"] / ms["off"]
    print(
        f"Machine: {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}; load average at the end: "
        + ", ".join(f"{x:.2f}" for x in os.getloadavg())
    )
    print(
        f"Command: benchmarks/capture.py --n {args.n} --k {args.k} --c {args.c} "
        f"--repeat {args.repeat} --latency-ms {args.latency_ms:g} --transport {args.transport} "
        f"(least CPU of {args.repeat}; {time.perf_counter() - started:.0f} s in all)"
    )
    print()
    print("| capture | turns | CPU ms/turn | wall s | record KiB/turn | peak RSS MB | failures |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for variant, data in best.items():
        print(
            f"| {variant} | {data['turns']} | {ms[variant]:.3f} | {data['wall_s']:.2f} | "
            f"{data['bytes'] / data['turns'] / 1024:.1f} | {data['maxrss_kb'] / 1024:.0f} | "
            f"{data['failures']} |"
        )
    verdict = "met" if ratio <= 2.0 else "NOT met"
    print(f"\ncapture on / off: {ratio:.2f}x CPU per turn (target <= 2x: {verdict})")
    if on["broken"] or on["failures"] or off["failures"]:
        print("WARNING: failures or non-contiguous rollouts; the figures are not comparable")
    if args.json:
        args.json.write_text(json.dumps({"best": best, "ratio": ratio}, indent=2))
    return 0 if ratio <= 2.0 and not on["broken"] else 1


if __name__ == "__main__":
    sys.exit(main())
