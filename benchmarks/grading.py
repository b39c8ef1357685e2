"""Grading cost: grade time against reply size, and the verifiers' scaling.

    .venv/bin/python benchmarks/grading.py                 # ~1 minute
    .venv/bin/python benchmarks/grading.py --repeat 3 --json out.json

Three parts, every time measured in this one process (best of `--repeat`:
noise from other processes only ever adds time), and every target a ratio
within the run:

1. `target`: the reply of issue #10: 3,000 fragments `[ {"a": 1} ` then a
   1,000-event list (110 KB). Grade time over `json.loads` of the list it
   contains; target at most 5x. Graded against one expected event (the
   count differs: the list is found, decoded and keyed) and against all
   1,000 (every check runs, the reply passes), given as an `ExpectedState`
   (parsed once, as a verifier holds it) and as a raw dict (parsed on every
   call: 1,000 expected entries, far more than any dataset's).
2. `size`: grade time against reply size, 16 KB to 2 MB, for several
   shapes of reply; linear means the time per KB stays flat.
3. `verifiers`: the turn verifiers, the grader and the simulated user's
   check on replies of 1,000 to 8,000 events that all overlap; n log n
   means the time grows about 9-10x from 1,000 to 8,000 (quadratic: 64x).
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from convo_sim import Message, Transcript, TurnContext
from convo_sim.domains.calendar import ExpectedState, grade_calendar_response
from convo_sim.domains.calendar._reply import _read as reading  # the shared reading, uncached
from convo_sim.scenarios import CalendarGoal, GoalStep, Scenario
from convo_sim.users import CalendarUser
from convo_sim.verifiers import ConstraintsHonoured, EventsPresent, NoConflicts, ValidCalendar

KB = 1024


def _number(call: Callable[[], object], budget: float) -> int:
    call()  # warm caches and imports
    start = time.perf_counter()
    call()
    return max(1, int(budget / max(time.perf_counter() - start, 1e-7)))


def best(call: Callable[[], object], repeat: int, *, budget: float = 0.2) -> float:
    """Seconds per call: the best of `repeat` rounds, each as many calls as fit in `budget`."""
    return paired({"call": call}, repeat, budget=budget)[0]["call"]


def paired(
    calls: dict[str, Callable[[], object]], repeat: int, *, budget: float = 0.2
) -> tuple[dict[str, float], dict[str, float]]:
    """Best seconds per call of each, and each one's median ratio to the first.

    Each round times every call in turn, so the ratios compare times taken
    moments apart: a machine shared with other work slows a round as a
    whole, and the median over rounds is what one ratio is worth. What
    exists before a batch (the inputs of every size) is frozen out of the
    collector, so that a collection costs what the call itself left behind,
    not what this benchmark keeps around.
    """
    numbers = {name: _number(call, budget) for name, call in calls.items()}
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeat):
        for name, call in calls.items():
            gc.collect()
            gc.freeze()
            number = numbers[name]
            start = time.perf_counter()
            for _ in range(number):
                call()
            times[name].append((time.perf_counter() - start) / number)
            gc.unfreeze()
    first = next(iter(calls))
    ratios = {
        name: statistics.median(t / b for t, b in zip(times[name], times[first], strict=True))
        for name in calls
    }
    return {name: min(values) for name, values in times.items()}, ratios


def events(n: int, *, name: Callable[[int], str] = lambda i: f"Event {i}") -> list[dict[str, Any]]:
    return [
        {
            "event_id": i,
            "event_name": name(i),
            "start_time": f"{i // 60 % 24:02d}:{i % 60:02d}",
            "duration": 1,
        }
        for i in range(n)
    ]


def expected(n: int, duration: int = 1) -> dict[str, dict[str, Any]]:
    return {
        str(i): {
            "event_id": i,
            "duration": duration,
            "constraint": None,
            "min_time": "0:00",
            "max_time": "24:00",
        }
        for i in range(n)
    }


# --- 1. The target --------------------------------------------------------------------


def target(repeat: int) -> dict[str, Any]:
    listing = json.dumps(events(1000))
    reply = '[ {"a": 1} ' * 3000 + listing
    # Times that repeat across the day would overlap; this list passes.
    one = expected(1)
    every_dict = expected(1000)
    every_state = ExpectedState.from_dict(every_dict)  # parsed once, as a verifier holds it
    assert grade_calendar_response(reply, every_state).passed
    times, ratios = paired(
        {
            "json_loads": lambda: json.loads(listing),
            "grade_1_expected": lambda: grade_calendar_response(reply, one),
            "grade_1000_expected": lambda: grade_calendar_response(reply, every_state),
            "grade_1000_expected_dict": lambda: grade_calendar_response(reply, every_dict),
            "parse_1000_expected": lambda: ExpectedState.from_dict(every_dict),
            "read_reply": lambda: reading(reply),
        },
        repeat,
    )
    return {
        "reply_kb": round(len(reply) / KB, 1),
        "list_kb": round(len(listing) / KB, 1),
        **{f"{name}_ms": seconds * 1e3 for name, seconds in times.items()},
        **{f"ratio_{name}": ratio for name, ratio in ratios.items() if name != "json_loads"},
    }


# --- 2. Size --------------------------------------------------------------------------


def _fragments_and_list(size: int) -> tuple[str, str | None]:
    n = max(1, size // 115)  # about 3 fragments (36 B) and one event (79 B) each
    listing = json.dumps(events(n))
    return '[ {"a": 1} ' * (3 * n) + listing, listing


def _bracketed_names(size: int) -> tuple[str, str | None]:
    n = max(2, size // 95)
    listing = json.dumps(events(n, name=lambda i: f"Review [draft {i}]"))
    return "Here is the calendar:\n" + listing, listing


def _first_name_bracketed(size: int) -> tuple[str, str | None]:
    # Only the first name holds brackets: the list is the candidate, found
    # by the exact path over all of it, then decoded and graded.
    n = max(2, size // 80)
    listing = json.dumps(events(n, name=lambda i: "Review [draft]" if i == 0 else f"Event {i}"))
    return "Here is the calendar:\n" + listing, listing


def _truncated(size: int) -> tuple[str, str | None]:
    text, listing = _bracketed_names(size)
    return text[:-1], listing  # a reply cut off before its last "]"


def _prose_brackets(size: int) -> tuple[str, str | None]:
    # Adversarial: brackets everywhere, the list (3 events) at the very end.
    unit = "see [note 1] and {x: [y]} then ] [ "
    listing = json.dumps(events(3))
    return unit * max(1, (size - len(listing)) // len(unit)) + listing, None


def _open_groups(size: int) -> tuple[str, str | None]:
    # Adversarial: every "[" sits in an open "{", so the whole reply takes
    # the exact path, one structural character at a time.
    unit = '{"a": "[", "b": "]"} '
    listing = json.dumps(events(3))
    return "[" + unit * max(1, (size - len(listing)) // len(unit)) + "] " + listing, None


SHAPES: dict[str, Callable[[int], tuple[str, str | None]]] = {
    "fragments+list": _fragments_and_list,
    "names with brackets (no list)": _bracketed_names,
    "a bracket in the first name": _first_name_bracketed,
    "truncated, names with brackets": _truncated,
    "brackets in prose": _prose_brackets,
    "brackets in open groups": _open_groups,
}
SIZES = [16 * KB, 64 * KB, 256 * KB, 1024 * KB, 2048 * KB]


def size_scaling(repeat: int, sizes: list[int]) -> dict[str, list[dict[str, Any]]]:
    state = expected(1)
    table: dict[str, list[dict[str, Any]]] = {}
    for shape, build in SHAPES.items():
        rows = []
        for size in sizes:
            reply, listing = build(size)
            calls: dict[str, Callable[[], object]] = {
                "grade": lambda reply=reply: grade_calendar_response(reply, state)
            }
            if listing is not None:  # a list worth comparing with
                calls = {"json_loads": lambda listing=listing: json.loads(listing), **calls}
            times, ratios = paired(calls, repeat)
            rows.append(
                {
                    "kb": round(len(reply) / KB),
                    "grade_ms": times["grade"] * 1e3,
                    "us_per_kb": times["grade"] * 1e6 / (len(reply) / KB),
                    "ratio_json_loads": ratios["grade"] if listing is not None else None,
                }
            )
        table[shape] = rows
    return table


# --- 3. Verifiers ---------------------------------------------------------------------


def crowded(n: int) -> str:
    # Every event overlaps its neighbours: the worst case for pairwise checks.
    return json.dumps(
        [
            {"event_id": i, "event_name": f"E{i}", "start_time": f"{10 + i % 5}:{i % 60:02d}",
             "duration": 90}
            for i in range(n)
        ]
    )  # fmt: skip


def _checks(n: int) -> dict[str, Callable[[], object]]:
    """What reads one reply of `n` overlapping events, each as a call."""
    reply = crowded(n)
    message = Message(role="assistant", content=reply)
    asks = tuple(
        Message(role="user", content=f'Add "E{i}" for 90 minutes (event id: {i})') for i in range(n)
    )
    ctx = TurnContext(Transcript(messages=(*asks, message)), message, 1)
    steps = tuple(GoalStep(action="add", event_id=i, name=f"E{i}", duration=90) for i in range(n))
    user = CalendarUser(Scenario(id="bench", goal=CalendarGoal(steps=steps)))
    user.revealed = n
    state = ExpectedState.from_dict(expected(n, 90))  # held parsed, as a verifier holds it
    # The reading of a reply is shared and cached, so the turn verifiers and
    # the user are timed after it; the reading itself uncached.
    checks: dict[str, Callable[[], object]] = {"read_reply": lambda: reading(reply)}
    for verifier in (ValidCalendar(), NoConflicts(), EventsPresent(), ConstraintsHonoured()):
        verifier(ctx)  # the requests are replayed once per dialogue, not per check
        checks[verifier.name] = lambda v=verifier: v(ctx)
    checks["grade_calendar_response"] = lambda: grade_calendar_response(reply, state)
    checks["simulated_user"] = lambda: user._check(reply)
    return checks


def verifier_scaling(repeat: int, counts: list[int]) -> dict[str, list[float]]:
    table: dict[str, list[float]] = {}
    for n in counts:
        for name, call in _checks(n).items():
            table.setdefault(name, []).append(best(call, repeat, budget=0.1) * 1e3)
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="rounds per measurement")
    parser.add_argument("--json", help="write every number to this file")
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run)")
    args = parser.parse_args(argv)
    sizes = SIZES[:2] if args.quick else SIZES
    counts = [250, 500] if args.quick else [1000, 2000, 4000, 8000]

    results: dict[str, Any] = {"python": sys.version.split()[0]}
    results["target"] = got = target(args.repeat)
    print(f"Target: a {got['reply_kb']} KB reply holding a {got['list_kb']} KB list")
    print(
        f"  json.loads(list)                 {got['json_loads_ms']:8.2f} ms  (ratios: median over rounds)"
    )
    for label, key in (
        ("grade, 1 expected event", "1_expected"),
        ("grade, 1000 expected events", "1000_expected"),
        ("the same, state given as a dict", "1000_expected_dict"),
    ):
        print(f"  {label:32} {got[f'grade_{key}_ms']:8.2f} ms  {got[f'ratio_grade_{key}']:5.2f}x")
    print(
        f"  (parsing that dict alone         {got['parse_1000_expected_ms']:8.2f} ms  {got['ratio_parse_1000_expected']:5.2f}x)"
    )
    print(
        f"  read_reply (shared reading)      {got['read_reply_ms']:8.2f} ms  {got['ratio_read_reply']:5.2f}x"
    )
    met = got["ratio_grade_1000_expected"] <= 5 and got["ratio_grade_1_expected"] <= 5
    print("  target: grade <= 5x json.loads:", "met" if met else "MISSED")

    results["size"] = table = size_scaling(args.repeat, sizes)
    print("\nGrade time against reply size (ms; µs per KB; x json.loads of the list held)")
    for shape, rows in table.items():
        cells = "  ".join(
            f"{r['kb']:>5} KB {r['grade_ms']:8.2f} ms {r['us_per_kb']:6.2f} µs/KB "
            + ("       " if r["ratio_json_loads"] is None else f"{r['ratio_json_loads']:6.2f}x")
            for r in rows
        )
        flat = rows[-1]["us_per_kb"] / statistics.median(r["us_per_kb"] for r in rows)
        print(f"  {shape:31} {cells}  (per KB, largest/median {flat:.2f})")

    results["verifiers"] = scaling = verifier_scaling(args.repeat, counts)
    print(f"\nVerifiers on replies of {counts} overlapping events (ms; growth first to last)")
    for name, times in scaling.items():
        growth = times[-1] / times[0]
        cells = "  ".join(f"{t:8.2f}" for t in times)
        print(f"  {name:24} {cells}   x{growth:5.1f}")

    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(results, out, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
