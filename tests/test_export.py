"""Training exports: captured runs through the real HTTP path, written in every format, read back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from convo_sim import (
    EXPORT_FORMATS,
    ErrorInfo,
    Rollout,
    TerminationReason,
    TurnScore,
    read_rollouts,
    token_samples,
    write_export,
)
from convo_sim.cli import main
from convo_sim.server import ServerThread, TokenOptions

FIELDS = ("prompt_token_ids", "generation_token_ids", "generation_log_probs")
# Each token format's names for (prompt, completion, mask, logprobs, reward).
NAMES = {
    "trl": ("prompt_ids", "completion_ids", "env_mask", "logprobs", "reward"),
    "verl": ("prompt_ids", "response_ids", "response_mask", "response_logprobs", "reward_score"),
    "skyrl": ("prompt_token_ids", "response_ids", "loss_masks", "rollout_logprobs", "rewards"),
}


def _run(tmp: Path, name: str, options: TokenOptions, *more: str) -> Path:
    out = tmp / f"{name}.jsonl"
    with ServerThread(tokens=options) as server:
        code = main(
            [
                "run",
                "--assistant",
                "openai:calendar-solver",
                "--user",
                "builtin",
                "--base-url",
                server.base_url,
                "--capture-tokens",
                "--no-progress",
                "--out",
                str(out),
                *more,
            ]
        )
    assert code == 0
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The issue's done-when run (exact tokenizer), and one whose server drifts and ignores ids."""
    tmp = tmp_path_factory.mktemp("runs")
    return {
        "contiguous": _run(tmp, "contiguous", TokenOptions()),
        "drifted": _run(tmp, "drifted", TokenOptions(drift=True, honour_token_ids=False)),
    }


def _read(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _policy(record: Rollout) -> list[dict[str, Any]]:
    return [i for i in record.responses_create_params["input"] if i.get("generation_token_ids")]


def test_the_run_records_the_three_fields_on_every_generated_assistant_item(
    runs: dict[str, Path],
) -> None:
    records = read_rollouts(runs["contiguous"])
    assert len(records) == 10
    for record in records:
        items = record.responses_create_params["input"]
        assistants = [i for i in items if i.get("role") == "assistant"]
        assert len(assistants) == record.turns > 0
        assert all(all(name in item for name in FIELDS) for item in assistants)
        assert not any(name in i for i in items if i.get("role") != "assistant" for name in FIELDS)
        assert record.contiguity is not None and record.contiguity.contiguous
        assert record.usage_by_role["assistant"].completion_tokens == sum(
            len(i["generation_token_ids"]) for i in assistants
        )
        assert record.usage_by_role["user"].total_tokens == 0  # the builtin user
    drifted = read_rollouts(runs["drifted"])
    assert all(r.contiguity is not None and r.contiguity.broken_turn == 2 for r in drifted)


def _check_sample(row: dict[str, Any], names: tuple[str, ...], record: Rollout, turn: Any) -> None:
    prompt, completion, mask, logprobs, reward = (row[n] for n in names)
    policy = _policy(record)
    assert len(completion) == len(mask) == len(logprobs)
    assert set(mask) <= {0, 1}
    assert reward == record.reward
    chosen = policy if turn is None else [policy[turn - 1]]
    generated = [t for item in chosen for t in item["generation_token_ids"]]
    values = [v for item in chosen for v in item["generation_log_probs"]]
    # The mask's ones are exactly the generated tokens, in order, with their logprobs.
    assert sum(mask) == len(generated)
    assert [t for t, m in zip(completion, mask, strict=True) if m] == generated
    assert [v for v, m in zip(logprobs, mask, strict=True) if m] == values
    assert all(v == 0.0 for v, m in zip(logprobs, mask, strict=True) if not m)
    assert prompt == chosen[0]["prompt_token_ids"]
    # Prompt and completion are the whole sequence the last turn saw and made.
    assert (
        prompt + completion == chosen[-1]["prompt_token_ids"] + chosen[-1]["generation_token_ids"]
    )


@pytest.mark.parametrize("fmt", sorted(NAMES))
@pytest.mark.parametrize("which", ["contiguous", "drifted"])
def test_token_formats_round_trip(
    fmt: str, which: str, runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / f"{fmt}.jsonl"
    assert main(["export", str(runs[which]), "--format", fmt, "--out", str(out)]) == 0
    records = {r.key: r for r in read_rollouts(runs[which])}
    rows = _read(out)
    if which == "contiguous":  # one whole-dialogue row per rollout
        assert len(rows) == len(records)
    else:  # one row per policy turn
        assert len(rows) == sum(r.turns for r in records.values())
        assert "of them one row per policy turn" in capsys.readouterr().out
    for row in rows:
        meta = row.get("extra_fields") or row.get("rollout_metrics") or row
        if fmt == "skyrl":
            key = (row["trajectory_ids"]["instance_id"], row["trajectory_ids"]["repetition_id"])
        else:
            key = (meta.get("scenario_id"), meta.get("sample_index"))
        _check_sample(row, NAMES[fmt], records[key], meta["turn"])
    if fmt == "verl":
        assert all(row["num_turns"] >= 2 and row["extra_fields"]["turn_scores"] for row in rows)
    if fmt == "skyrl":
        lasts = [row["is_last_step"] for row in rows]
        assert sum(lasts) == len(records)


def _nemo_rl_walk(result: dict[str, Any]) -> tuple[list[int], int]:
    """What NeMo-RL does with a NeMo-Gym result (written from its documented behaviour):
    walk response.output, require each trainable item's prompt to extend what was
    seen, and build the token sequence; returns it and the trainable tokens."""
    seen: list[int] = []
    trained = 0
    for item in result["response"]["output"]:
        if not item.get("generation_token_ids"):
            continue
        prompt = item["prompt_token_ids"]
        assert seen == prompt[: len(seen)], "Non-contiguous messages found!"
        seen = seen + prompt[len(seen) :] + item["generation_token_ids"]
        assert len(item["generation_log_probs"]) == len(item["generation_token_ids"])
        trained += len(item["generation_token_ids"])
    assert trained, "NeMo Gym returned a result with no generation data."
    return seen, trained


@pytest.mark.parametrize("which", ["contiguous", "drifted"])
def test_nemo_rl_rows_pass_nemo_rls_walk(runs: dict[str, Path], tmp_path: Path, which: str) -> None:
    out = tmp_path / "nemo.jsonl"
    assert main(["export", str(runs[which]), "--format", "nemo-rl", "--out", str(out)]) == 0
    records = {r.key: r for r in read_rollouts(runs[which])}
    rows = _read(out)
    assert len(rows) == (
        len(records) if which == "contiguous" else sum(r.turns for r in records.values())
    )
    for row in rows:
        record = records[row["scenario_id"], row["sample_index"]]
        seen, trained = _nemo_rl_walk(row)
        policy = _policy(record)
        chosen = policy if row["turn"] is None else [policy[row["turn"] - 1]]
        assert trained == sum(len(i["generation_token_ids"]) for i in chosen)
        assert seen == chosen[-1]["prompt_token_ids"] + chosen[-1]["generation_token_ids"]
        assert row["reward"] == record.reward
        # The request's input plus the response's output is the dialogue again.
        items = record.responses_create_params["input"]
        start = len(row["responses_create_params"]["input"])
        assert row["responses_create_params"]["input"] == items[:start]
        assistants = [o for o in row["response"]["output"] if o.get("role") == "assistant"]
        assert all(
            o["type"] == "message" and o["content"][0]["type"] == "output_text" for o in assistants
        )


def test_messages_rows_keep_every_record_as_chat(runs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "messages.jsonl"
    assert main(["export", str(runs["contiguous"]), "--format", "messages", "--out", str(out)]) == 0
    records = {r.key: r for r in read_rollouts(runs["contiguous"])}
    rows = _read(out)
    assert len(rows) == len(records)
    for row in rows:
        record = records[row["scenario_id"], row["sample_index"]]
        assert [m["content"] for m in row["messages"]] == [m.content for m in record.transcript]
        assert row["reward"] == record.reward
        assert not any(name in m for m in row["messages"] for name in FIELDS)


def test_per_turn_splits_even_a_contiguous_rollout(runs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "trl.jsonl"
    args = ["export", str(runs["contiguous"]), "--format", "trl", "--out", str(out), "--per-turn"]
    assert main(args) == 0
    records = read_rollouts(runs["contiguous"])
    rows = _read(out)
    assert len(rows) == sum(r.turns for r in records)
    assert all(row["env_mask"] == [1] * len(row["completion_ids"]) for row in rows)


def test_failed_and_tokenless_records_are_left_out_and_counted(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    records = read_rollouts(runs["contiguous"])
    failed = records[0].model_copy(
        update={
            "error": ErrorInfo(source="assistant", type="ModelError", message="x"),
            "sample_index": 7,
        }
    )
    plain = records[1].model_copy(
        update={
            "responses_create_params": {
                "input": [
                    {k: v for k, v in item.items() if k not in FIELDS}
                    for item in records[1].responses_create_params["input"]
                ]
            },
            "sample_index": 8,
        }
    )
    source = tmp_path / "mixed.jsonl"
    source.write_bytes(b"".join(r.to_json_line() for r in [*records, failed, plain]))
    out = tmp_path / "trl.jsonl"
    assert main(["export", str(source), "--format", "trl", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "1 without token data" in printed and "1 failed dialogues" in printed
    assert len(_read(out)) == len(records)
    stats = write_export(source, out, "trl", include_errors=True)
    assert (stats.rollouts, stats.errors, stats.no_tokens) == (len(records) + 1, 0, 1)
    assert main(["export", str(source), "--format", "messages", "--out", str(out)]) == 0
    assert len(_read(out)) == len(records) + 1  # text needs no tokens; the failure stays out


def test_bad_input_is_one_line_naming_the_file_and_line(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = runs["contiguous"].read_bytes().splitlines(keepends=True)
    record = json.loads(lines[2])
    for item in record["responses_create_params"]["input"]:
        if item.get("role") == "assistant":
            item["generation_log_probs"] = item["generation_log_probs"][:-1]
            break
    lines[2] = json.dumps(record).encode() + b"\n"
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b"".join(lines))
    out = tmp_path / "out.jsonl"
    assert main(["export", str(bad), "--format", "verl", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{bad}:3:" in err and "generation_log_probs" in err
    assert not out.exists()
    assert main(["export", str(tmp_path / "none.jsonl"), "--format", "trl", "--out", str(out)]) == 2
    assert "no such rollouts file" in capsys.readouterr().err
    assert main(["export", str(bad), "--format", "trl", "--out", str(bad)]) == 2
    assert "overwrite" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:  # argparse's own one-line usage error
        main(["export", str(bad), "--format", "bogus", "--out", str(out)])
    assert usage.value.code == 2


# -- properties of the samples, on made-up records ----------------------------------------------

TOKENS = st.lists(st.integers(0, 300), min_size=1, max_size=8)


def _record(turns: list[tuple[list[int], list[int]]], reward: float) -> Rollout:
    items: list[dict[str, Any]] = [{"role": "system", "content": "s"}]
    for n, (prompt, generation) in enumerate(turns):
        items.append({"role": "user", "content": f"u{n}"})
        items.append(
            {
                "role": "assistant",
                "content": f"a{n}",
                "prompt_token_ids": prompt,
                "generation_token_ids": generation,
                "generation_log_probs": [-(t + 1) / 10 for t in generation],
            }
        )
    scores = [TurnScore(score=0.5, verifier="v", turn=n + 1) for n in range(len(turns))]
    return Rollout(
        responses_create_params={"input": items},
        reward=reward,
        scenario_id="s",
        sample_index=0,
        seed=0,
        termination=TerminationReason.USER_STOP,
        terminated_by="t",
        turns=len(turns),
        turn_scores=tuple(scores),
    )


@given(
    TOKENS,
    st.lists(st.tuples(TOKENS, TOKENS), min_size=1, max_size=5),
    st.booleans(),
    st.floats(0, 1),
)
def test_samples_mask_exactly_the_generated_tokens(
    first: list[int], steps: list[tuple[list[int], list[int]]], break_it: bool, reward: float
) -> None:
    turns = []
    prompt = first
    for added, generation in steps:
        turns.append((prompt, generation))
        prompt = prompt + generation + added
    if break_it and len(turns) > 1:
        p, g = turns[-1]
        turns[-1] = ([p[0] + 1000, *p[1:]], g)
    broken = break_it and len(turns) > 1
    samples = token_samples(_record(turns, reward))
    assert len(samples) == (len(turns) if broken else 1)
    for sample in samples:
        assert len(sample.completion_ids) == len(sample.mask) == len(sample.logprobs)
        chosen = turns if sample.turn is None else [turns[sample.turn - 1]]
        generated = [t for _, g in chosen for t in g]
        assert [
            t for t, m in zip(sample.completion_ids, sample.mask, strict=True) if m
        ] == generated
        assert [v for v, m in zip(sample.logprobs, sample.mask, strict=True) if m] == [
            -(t + 1) / 10 for t in generated
        ]
        assert sample.reward == reward
        assert sample.turn_scores == [0.5] * len(chosen)
    assert samples[-1].last


def test_every_format_is_listed() -> None:
    assert set(EXPORT_FORMATS) == {"nemo-rl", "trl", "verl", "skyrl", "messages"}
