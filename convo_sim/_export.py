"""Rollouts as training data: token samples and each RL trainer's own rows.

A captured rollout (`capture_tokens`) keeps every policy turn's
`prompt_token_ids`, `generation_token_ids` and `generation_log_probs` on its
assistant items. `token_samples` turns one into `TokenSample`s:

* **whole dialogue**, when the rollout is contiguous (`check_contiguity`):
  the prompt is the first policy turn's prompt, the completion everything
  after it (each generation, and the tokens between generations: user
  messages and template glue), the mask 1 exactly on generated tokens, the
  logprobs aligned with the completion (0.0 where the mask is 0);
* **one sample per policy turn** otherwise, or when asked (`per_turn`):
  that turn's prompt and generation, mask all ones.

`export_rows` writes them in each trainer's documented field names (see
docs/training-data.md for the sources): `trl` (`GRPOTrainer` `rollout_func`),
`verl` (`AgentLoopOutput`), `skyrl` (`GeneratorOutput`), `nemo-rl` (the
NeMo-Gym rollout result NeMo-RL reads, token fields on `response.output`),
and `messages` (chat messages and the reward, no tokens). Every sample
carries the dialogue's reward and its turns' mean turn-verifier scores.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from convo_sim._capture import check_contiguity, policy_items, token_fields
from convo_sim._errors import InputError
from convo_sim._messages import TOKEN_FIELDS, Transcript, _content_text
from convo_sim._records import Rollout
from convo_sim._tools import chat_tools

__all__ = [
    "EXPORT_FORMATS",
    "ExportFormat",
    "ExportStats",
    "TokenSample",
    "export_rows",
    "token_samples",
    "write_export",
]

ExportFormat = Literal["nemo-rl", "trl", "verl", "skyrl", "messages"]
EXPORT_FORMATS: tuple[str, ...] = get_args(ExportFormat)
"""The formats `export_rows` writes."""

_TOKEN_FORMATS = frozenset(("nemo-rl", "trl", "verl", "skyrl"))


@dataclass(frozen=True, slots=True)
class TokenSample:
    """One training sample: a prompt, what followed it, and which of that the policy generated.

    Attributes:
        scenario_id: the rollout's scenario.
        sample_index: the rollout's sample index.
        turn: the policy turn (1-based) of a per-turn sample; None for the
            whole dialogue.
        last: the sample ends with the rollout's last policy turn.
        prompt_ids: the prompt's token ids.
        completion_ids: the token ids after the prompt.
        mask: 1 where the policy generated the token, 0 elsewhere.
        logprobs: one per completion token: the policy's logprob where the
            mask is 1, 0.0 elsewhere.
        reward: the dialogue's reward (0.0 when nothing was scored).
        turn_scores: the mean turn-verifier score of each policy turn in the
            sample (None for a turn nothing scored).
        num_turns: the messages (user, assistant, tool) up to the sample's
            last policy turn, as verl counts turns.
        termination: why the dialogue ended.
    """

    scenario_id: str
    sample_index: int
    turn: int | None
    last: bool
    prompt_ids: list[int]
    completion_ids: list[int]
    mask: list[int]
    logprobs: list[float]
    reward: float
    turn_scores: list[float | None]
    num_turns: int
    termination: str


def _turn_scores(rollout: Rollout, turns: int) -> list[float | None]:
    sums = [0.0] * turns
    counts = [0] * turns
    for score in rollout.turn_scores:
        if 1 <= score.turn <= turns:
            sums[score.turn - 1] += score.score
            counts[score.turn - 1] += 1
    return [s / c if c else None for s, c in zip(sums, counts, strict=True)]


def _spoken_before(items: Sequence[Any], end: int) -> int:
    """Messages (user, assistant, tool output) among `items[:end]`, as verl counts turns."""
    count = 0
    for item in items[:end]:
        if not isinstance(item, Mapping):
            continue
        if item.get("role") in ("user", "assistant") or item.get("type") == "function_call_output":
            count += 1
    return count


def token_samples(rollout: Rollout, *, per_turn: bool = False) -> list[TokenSample]:
    """The training samples of one rollout; empty when it carries no token data.

    One whole-dialogue sample when the policy turns are contiguous (and
    `per_turn` is False), else one sample per policy turn.

    Raises:
        ValueError: a token field is malformed (the message names the item).
    """
    items = list(rollout.responses_create_params.get("input") or ())
    turns = policy_items(items)
    if not turns:
        return []
    contiguity = check_contiguity(items)
    fields = [token_fields(item, f"input[{index}]") for index, item in turns]
    scores = _turn_scores(rollout, len(turns))

    def sample(
        turn: int | None,
        prompt: list[int],
        completion: list[int],
        mask: list[int],
        logprobs: list[float],
        end: int,
    ) -> TokenSample:
        return TokenSample(
            scenario_id=rollout.scenario_id,
            sample_index=rollout.sample_index,
            turn=turn,
            last=turn is None or turn == len(turns),
            prompt_ids=list(prompt),
            completion_ids=completion,
            mask=mask,
            logprobs=logprobs,
            reward=float(rollout.reward or 0.0),
            turn_scores=scores if turn is None else [scores[turn - 1]],
            num_turns=_spoken_before(items, end + 1),
            termination=str(rollout.termination),
        )

    if not per_turn and contiguity is not None and contiguity.contiguous:
        prompt = fields[0][0]
        completion: list[int] = []
        mask: list[int] = []
        logprobs: list[float] = []
        seen = len(prompt)
        for turn_prompt, generation, values in fields:
            between = turn_prompt[seen:]
            completion += between
            mask += [0] * len(between)
            logprobs += [0.0] * len(between)
            completion += generation
            mask += [1] * len(generation)
            logprobs += [float(v) for v in values]
            seen = len(turn_prompt) + len(generation)
        return [sample(None, prompt, completion, mask, logprobs, turns[-1][0])]
    return [
        sample(
            number,
            turn_prompt,
            list(generation),
            [1] * len(generation),
            [float(v) for v in values],
            index,
        )
        for number, ((index, _), (turn_prompt, generation, values)) in enumerate(
            zip(turns, fields, strict=True), start=1
        )
    ]


# -- each trainer's row ---------------------------------------------------------


def _trl_row(s: TokenSample) -> dict[str, Any]:
    # GRPOTrainer(rollout_func=...) takes prompt_ids, completion_ids and
    # logprobs, and env_mask (1 = model token); any other key reaches the
    # reward functions as a keyword argument.
    return {
        "prompt_ids": s.prompt_ids,
        "completion_ids": s.completion_ids,
        "logprobs": s.logprobs,
        "env_mask": s.mask,
        "reward": s.reward,
        "turn_scores": s.turn_scores,
        "scenario_id": s.scenario_id,
        "sample_index": s.sample_index,
        "turn": s.turn,
    }


def _verl_row(s: TokenSample) -> dict[str, Any]:
    # verl's AgentLoopOutput: response_mask 1 = LLM-generated; turn_scores
    # ride in extra_fields, as its ToolAgentLoop puts them.
    return {
        "prompt_ids": s.prompt_ids,
        "response_ids": s.completion_ids,
        "response_mask": s.mask,
        "response_logprobs": s.logprobs,
        "reward_score": s.reward,
        "num_turns": s.num_turns,
        "extra_fields": {
            "turn_scores": s.turn_scores,
            "scenario_id": s.scenario_id,
            "sample_index": s.sample_index,
            "turn": s.turn,
        },
    }


def _skyrl_row(s: TokenSample) -> dict[str, Any]:
    # One entry of SkyRL's GeneratorOutput (its keys are the batch's lists):
    # is_last_step marks the end of a trajectory in step-wise training.
    return {
        "prompt_token_ids": s.prompt_ids,
        "response_ids": s.completion_ids,
        "rewards": s.reward,
        "loss_masks": s.mask,
        "rollout_logprobs": s.logprobs,
        "stop_reasons": s.termination,
        "trajectory_ids": {"instance_id": s.scenario_id, "repetition_id": s.sample_index},
        "is_last_step": s.last,
        "rollout_metrics": {"turn_scores": s.turn_scores, "turn": s.turn},
    }


def _turn_start(items: Sequence[Any], index: int) -> int:
    """Where the policy turn whose fields sit on `items[index]` begins."""
    start = index
    while start > 0:
        item = items[start - 1]
        if not isinstance(item, Mapping) or item.get("generation_token_ids"):
            break
        if item.get("type") == "function_call" or (
            item.get("type", "message") == "message" and item.get("role") == "assistant"
        ):
            start -= 1
        else:
            break
    return start


def _output_item(item: Mapping[str, Any], number: int) -> dict[str, Any]:
    """An input item as a Responses output item, token fields kept."""
    kind = item.get("type", "message")
    tokens = {name: item[name] for name in TOKEN_FIELDS if name in item}
    if kind == "message" and item.get("role") == "assistant":
        text = _content_text(item.get("content")) or ""
        return {
            "id": f"msg_{number}",
            "type": "message",
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": text, "annotations": []}],
            **tokens,
        }
    if kind == "function_call":
        return {"id": f"fc_{number}", "status": "completed", **dict(item)}
    if kind == "message":
        return {"type": "message", **dict(item)}
    return dict(item)


def _nemo_rl_rows(rollout: Rollout, per_turn: bool) -> list[dict[str, Any]]:
    # NeMo-Gym's /run result: NeMo-RL walks response.output, checks that each
    # policy item's prompt extends what came before, and reads the reward.
    params = dict(rollout.responses_create_params)
    items = list(params.get("input") or ())
    turns = policy_items(items)
    contiguity = check_contiguity(items)
    whole = not per_turn and contiguity is not None and contiguity.contiguous
    spans = (
        [(_turn_start(items, turns[0][0]), len(items), None)]
        if whole
        else [
            (_turn_start(items, index), index + 1, number)
            for number, (index, _) in enumerate(turns, start=1)
        ]
    )
    scores = _turn_scores(rollout, len(turns))
    rows = []
    for start, end, turn in spans:
        output = [_output_item(item, n) for n, item in enumerate(items[start:end], start=start)]
        rows.append(
            {
                "responses_create_params": {**params, "input": items[:start]},
                "response": {
                    "id": f"resp_{rollout.sample_index}_{turn or 0}",
                    "object": "response",
                    "created_at": 0,
                    "model": "policy",
                    "status": "completed",
                    "output": output,
                    "parallel_tool_calls": True,
                    "tool_choice": "auto",
                    "tools": [],
                },
                "reward": float(rollout.reward or 0.0),
                "turn_scores": scores if turn is None else [scores[turn - 1]],
                "scenario_id": rollout.scenario_id,
                "sample_index": rollout.sample_index,
                "turn": turn,
            }
        )
    return rows


def _messages_row(rollout: Rollout) -> dict[str, Any]:
    items = list(rollout.responses_create_params.get("input") or ())
    row: dict[str, Any] = {
        "messages": Transcript.from_responses_input(items).to_openai(),
        "reward": float(rollout.reward or 0.0),
        "turn_scores": _turn_scores(rollout, rollout.turns),
        "scenario_id": rollout.scenario_id,
        "sample_index": rollout.sample_index,
        "termination": str(rollout.termination),
    }
    tools = rollout.responses_create_params.get("tools")
    if isinstance(tools, list) and tools:
        # The tools the assistant had, as chat templates take them.
        row["tools"] = chat_tools([t for t in tools if isinstance(t, Mapping)])
    return row


_SAMPLE_ROWS = {"trl": _trl_row, "verl": _verl_row, "skyrl": _skyrl_row}


@dataclass
class ExportStats:
    """What an export wrote and what it left out.

    Attributes:
        rows: rows written.
        rollouts: rollouts exported.
        split: of those, rollouts written one row per policy turn.
        no_tokens: rollouts left out of a token format for having no token data.
        errors: rollouts left out because their dialogue failed (`error` set).
    """

    rows: int = 0
    rollouts: int = 0
    split: int = 0
    no_tokens: int = 0
    errors: int = 0


def _rollout_rows(
    rollout: Rollout, format: ExportFormat, per_turn: bool
) -> tuple[list[dict[str, Any]], bool]:
    """One rollout's rows, and whether they are per policy turn."""
    if format == "messages":
        return [_messages_row(rollout)], False
    if format == "nemo-rl":
        if not policy_items(rollout.responses_create_params.get("input") or ()):
            return [], False
        rows = _nemo_rl_rows(rollout, per_turn)
        return rows, rows[0]["turn"] is not None
    samples = token_samples(rollout, per_turn=per_turn)
    row = _SAMPLE_ROWS[format]
    return [row(s) for s in samples], any(s.turn is not None for s in samples)


def export_rows(
    rollouts: Iterable[Rollout],
    format: ExportFormat,
    *,
    per_turn: bool = False,
    include_errors: bool = False,
    stats: ExportStats | None = None,
) -> Iterator[dict[str, Any]]:
    """The rows of `format` for `rollouts`, one JSON object each.

    Token formats skip rollouts without token data; every format skips
    rollouts whose dialogue failed unless `include_errors`. `stats`, when
    given, is filled in as rows are produced.

    Raises:
        ValueError: an unknown format, or a malformed token field.
    """
    if format not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {format!r}; expected one of {EXPORT_FORMATS}")
    stats = stats if stats is not None else ExportStats()
    for rollout in rollouts:
        if rollout.error is not None and not include_errors:
            stats.errors += 1
            continue
        rows, split = _rollout_rows(rollout, format, per_turn)
        if not rows:
            stats.no_tokens += 1
            continue
        stats.rollouts += 1
        stats.split += split
        stats.rows += len(rows)
        yield from rows


def _read_numbered(path: Path) -> Iterator[tuple[int, Rollout]]:
    """`(line, record)` for each record of a rollouts file; a torn last line is skipped."""
    from convo_sim._sink import _lines, _parse

    for number, _, line, is_last in _lines(path):
        if not line.strip():
            continue
        if is_last and not line.endswith(b"\n"):
            try:
                record = Rollout.model_validate_json(line)
            except ValueError:
                continue  # cut short by a crash while it was written
        else:
            record = _parse(path, number, line)
        yield number, record


def write_export(
    source: str | Path | Iterable[Rollout],
    out: str | Path,
    format: ExportFormat,
    *,
    per_turn: bool = False,
    include_errors: bool = False,
) -> ExportStats:
    """Write `format` rows for the rollouts of `source` (a rollouts file or records) to `out`.

    The file appears whole or not at all (written aside, then renamed).

    Raises:
        InputError: the source file is missing or holds a malformed record
            or token field (naming the file and line), or `out` cannot be
            written or is the source itself.
        ValueError: an unknown format.
    """
    if format not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {format!r}; expected one of {EXPORT_FORMATS}")
    out = Path(out)
    numbered: Iterable[tuple[int | None, Rollout]]
    src: Path | None = None
    if isinstance(source, str | Path):
        src = Path(source)
        if not src.is_file():
            raise InputError("no such rollouts file", path=src)
        if out.exists() and out.resolve() == src.resolve():
            raise InputError("the export would overwrite its own source", path=out)
        numbered = _read_numbered(src)
    else:
        numbered = ((None, r) for r in source)
    stats = ExportStats()
    temp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with temp.open("w", encoding="utf-8") as f:
            for line, rollout in numbered:
                try:
                    rows = list(
                        export_rows(
                            [rollout],
                            format,
                            per_turn=per_turn,
                            include_errors=include_errors,
                            stats=stats,
                        )
                    )
                except ValueError as exc:
                    raise InputError(
                        f"record ({rollout.scenario_id!r}, sample {rollout.sample_index}): {exc}",
                        path=src,
                        line=line,
                    ) from None
                for row in rows:
                    f.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")))
                    f.write("\n")
        os.replace(temp, out)
    except OSError as exc:
        raise InputError(f"cannot write the export: {exc.strerror or exc}", path=out) from None
    finally:
        temp.unlink(missing_ok=True)
    return stats
