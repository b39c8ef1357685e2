"""Record (or recompute) the calendar golden file: behaviour pinned across refactors.

The golden file holds, for the bundled calendar scenarios and 200 generated
ones, what the offline default produces through the CLI (`convo-sim run`,
two samples each) and through `run_scenario`: terminations, turns, rewards,
every turn score and verdict, and the transcript's texts. A refactor that
moves code must leave it unchanged; a deliberate behaviour change
re-records it (``python tests/golden/record.py``) and says why in its commit.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import anyio

GOLDEN = Path(__file__).with_name("calendar.jsonl")
GENERATED = 200
GENERATED_SEED = 12


def _scenarios() -> tuple[list[Any], list[Any]]:
    from convo_sim.domains.calendar import bundled_scenarios, generate_scenarios

    bundled = [*bundled_scenarios("calendar_examples"), *bundled_scenarios("nemo_calendar_example")]
    return bundled, list(generate_scenarios(GENERATED, seed=GENERATED_SEED))


def _digest(value: object) -> str:
    return hashlib.sha256(json.dumps(value).encode()).hexdigest()[:32]


def _row(path: str, key: tuple[str, int], rollout: Any) -> dict[str, Any]:
    return {
        "path": path,
        "scenario_id": key[0],
        "sample_index": key[1],
        "termination": str(getattr(rollout.termination, "value", rollout.termination)),
        "terminated_by": rollout.terminated_by,
        "turns": rollout.turns,
        "reward": rollout.reward,
        "turn_scores": _digest(
            [[s.verifier, s.turn, s.score, s.reason] for s in rollout.turn_scores]
        ),
        "verdicts": [[v.verifier, v.reward, v.reason] for v in rollout.verdicts],
        # Transcripts and turn scores by digest: in full they make the file megabytes.
        "transcript": _digest([[m.role, m.text] for m in rollout.transcript.messages]),
    }


def _cli_rows(tmp: Path) -> list[dict[str, Any]]:
    """`convo-sim run` on the bundled default, and on the generated set through a script."""
    from convo_sim import read_rollouts
    from convo_sim.cli import main

    script = tmp / "generated.py"
    script.write_text(
        "from convo_sim.domains.calendar import generate_scenarios\n"
        f"SCENARIOS = generate_scenarios({GENERATED}, seed={GENERATED_SEED})\n"
    )
    rows: list[dict[str, Any]] = []
    for name, extra in (("cli", []), ("cli-script", ["--script", str(script)])):
        out = tmp / f"{name}.jsonl"
        argv = ["run", *extra, "--samples", "2", "--seed", "3", "--out", str(out), "--no-progress"]
        code = main(argv)
        if code != 0:
            raise SystemExit(f"convo-sim {' '.join(argv)} exited {code}")
        rows += [_row(name, r.key, r) for r in read_rollouts(out)]
    return rows


def _python_rows(scenarios: Iterable[Any]) -> list[dict[str, Any]]:
    from convo_sim.scenarios import run_scenario

    async def run_all() -> list[dict[str, Any]]:
        rows = []
        for scenario in scenarios:
            result = await run_scenario(scenario)
            rows.append(_row("run_scenario", (scenario.id, 0), result))
        return rows

    return anyio.run(run_all)


def compute() -> list[dict[str, Any]]:
    """Every golden row, recomputed now, in a stable order."""
    bundled, generated = _scenarios()
    with tempfile.TemporaryDirectory() as tmp:
        rows = _cli_rows(Path(tmp))
    rows += _python_rows([*bundled, *generated])
    return sorted(rows, key=lambda r: (r["path"], r["scenario_id"], r["sample_index"]))


def load() -> list[dict[str, Any]]:
    return [json.loads(line) for line in GOLDEN.read_text().splitlines()]


if __name__ == "__main__":
    rows = compute()
    GOLDEN.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
    print(f"wrote {len(rows)} rows to {GOLDEN}", file=sys.stderr)
