"""Token capture on the client: what a capturing request asks for, and what it keeps.

With `ModelSettings(capture_tokens=True)` a chat-completions request asks
an OpenAI-compatible server for token ids and logprobs as vLLM serves them
and as NeMo-Gym's `vllm_model` asks for them (`logprobs: true`,
`top_logprobs: 0`, `return_tokens_as_token_ids: true`, plus
`return_token_ids: true`, vLLM >= 0.10.2). The reply keeps, in its
message's metadata, NeMo-Gym's three fields:

* `prompt_token_ids`: the ids the server actually prompted the model with;
* `generation_token_ids`: the ids it generated, as the server reports them;
* `generation_log_probs`: one logprob per generated id.

They are read, in this order, from a bundle on `choices[0].message` (what
NeMo-RL's server returns), else from vLLM's top-level `prompt_token_ids`
with `choices[0].token_ids` (or the `token_id:<id>` strings of
`choices[0].logprobs.content`). A reply without them fails the request
with `TokenCaptureError`: a capturing run never writes text-only turns.

On-policy across turns: the next request carries the three fields back on
the last assistant message that has them, NeMo-Gym's pass-back, which a
server that honours it (NeMo-RL's, `convo-sim serve`) turns into the
prompt instead of templating that history again. Only the last one is
sent: that is the one such a server reads, and sending every earlier
turn's would make each request grow with the square of the dialogue.
`check_contiguity` then checks every rollout the way NeMo-RL does.
"""

from __future__ import annotations

import math
import operator
from array import array
from collections.abc import Mapping, Sequence
from typing import Any, TypeGuard

from pydantic import BaseModel, ConfigDict

from convo_sim._messages import TOKEN_FIELDS, Message

__all__ = [
    "CAPTURE_REQUEST",
    "Contiguity",
    "MissingTokens",
    "chat_messages",
    "check_contiguity",
    "is_ids",
    "is_logprobs",
    "policy_items",
    "read_tokens",
    "token_fields",
]

CAPTURE_REQUEST: Mapping[str, Any] = {
    "logprobs": True,
    # An explicit null would turn logprobs off on vLLM; 0 keeps just the chosen token's.
    "top_logprobs": 0,
    "return_tokens_as_token_ids": True,
    "return_token_ids": True,
}
"""The request fields that ask a vLLM-compatible server for token ids and logprobs."""

_TOKEN_ID = "token_id:"
_LOGPROB = operator.itemgetter("logprob")


class MissingTokens(Exception):
    """The reply lacks (or garbles) a token field; `field` says which."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        super().__init__(problem)


def chat_messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """The chat messages of a capturing request, with the last tokened reply's fields."""
    out = [m.to_openai() for m in messages]
    for index in range(len(messages) - 1, -1, -1):
        message = messages[index]
        if message.role == "assistant" and message.metadata:
            meta = message.metadata
            if all(name in meta for name in TOKEN_FIELDS):
                out[index].update((name, meta[name]) for name in TOKEN_FIELDS)
                break
    return out


def is_ids(value: Any) -> TypeGuard[list[int]]:
    """True for a list of token ids: integers from 0 to 2**64 - 1.

    It runs on every captured reply, so an unsigned array does the checking
    at C speed (a tenth of a Python loop's cost); it lets a JSON `true` or
    `false` pass as 1 or 0, which no server sends.
    """
    if not isinstance(value, list):
        return False
    try:
        array("Q", value)
    except (TypeError, OverflowError):
        return False
    return True


def is_logprobs(value: Any) -> TypeGuard[list[float]]:
    """True for a list of finite numbers (JSON holds no others).

    One C pass: `fsum` refuses what is not a number, and its total is
    finite only when every term is (logprobs are far from overflowing).
    """
    if not isinstance(value, list):
        return False
    try:
        return math.isfinite(math.fsum(value))
    except (TypeError, OverflowError):
        return False


def _int_list(value: Any, field: str) -> list[int]:
    if not is_ids(value):
        raise MissingTokens(field, f"{field} is not a list of token ids (integers >= 0)")
    assert isinstance(value, list)
    return value


def _generated_from_logprobs(content: list[Any]) -> list[int]:
    ids: list[int] = []
    for entry in content:
        token = entry.get("token") if isinstance(entry, Mapping) else None
        if not isinstance(token, str) or not token.startswith(_TOKEN_ID):
            raise MissingTokens(
                "generation_token_ids",
                "the reply has no choices[0].token_ids and its logprobs do not name token "
                "ids (return_tokens_as_token_ids)",
            )
        try:
            ids.append(int(token[len(_TOKEN_ID) :]))
        except ValueError:
            raise MissingTokens("generation_token_ids", f"unreadable token {token!r}") from None
    return _int_list(ids, "generation_token_ids")


def read_tokens(data: Mapping[str, Any]) -> dict[str, list[Any]]:
    """The three token fields of a decoded `chat.completion` object.

    Raises:
        MissingTokens: a field is absent or malformed, or the lengths disagree.
    """
    try:
        choice = data["choices"][0]
        message = choice.get("message") or {}
    except (KeyError, IndexError, TypeError, AttributeError):
        raise MissingTokens("choices", "the reply has no choices") from None
    if isinstance(message, Mapping) and "generation_token_ids" in message:
        # A server that did the bookkeeping itself (NeMo-RL's) returns the bundle.
        prompt = _int_list(message.get("prompt_token_ids"), "prompt_token_ids")
        generated = _int_list(message.get("generation_token_ids"), "generation_token_ids")
        logprobs = message.get("generation_log_probs")
    else:
        if data.get("prompt_token_ids") is None:
            raise MissingTokens(
                "prompt_token_ids",
                "the reply has no prompt_token_ids: the server does not return token ids "
                "(vLLM does from 0.10.2, with return_token_ids)",
            )
        prompt = _int_list(data["prompt_token_ids"], "prompt_token_ids")
        logprobs_object = choice.get("logprobs")
        content = logprobs_object.get("content") if isinstance(logprobs_object, Mapping) else None
        if not isinstance(content, list):
            raise MissingTokens(
                "generation_log_probs",
                "the reply has no choices[0].logprobs.content: the server does not return logprobs",
            )
        ids = choice.get("token_ids")
        generated = (
            _generated_from_logprobs(content)
            if ids is None
            else _int_list(ids, "generation_token_ids")
        )
        try:
            logprobs = list(map(_LOGPROB, content))
        except (KeyError, TypeError):
            raise MissingTokens("generation_log_probs", "a logprobs entry has no logprob") from None
    if not is_logprobs(logprobs):
        raise MissingTokens("generation_log_probs", "generation_log_probs is not a list of numbers")
    if len(logprobs) != len(generated):
        raise MissingTokens(
            "generation_log_probs",
            f"{len(logprobs)} logprobs for {len(generated)} generated tokens",
        )
    if not prompt or not generated:
        raise MissingTokens("prompt_token_ids", "the reply's prompt or generation has no tokens")
    return {
        "prompt_token_ids": prompt,
        "generation_token_ids": generated,
        "generation_log_probs": logprobs,
    }


class Contiguity(BaseModel):
    """Whether a rollout's policy turns form one token sequence, as NeMo-RL requires.

    Each policy turn's `prompt_token_ids` must begin with everything before
    it: the first turn's prompt, then every turn's generation and the
    tokens added between turns (user messages, the template's glue).

    Attributes:
        contiguous: every turn extends the ones before it.
        policy_turns: assistant turns that carry token ids.
        generated_tokens: the policy's tokens over all those turns.
        broken_turn: the first policy turn (1-based) whose prompt does not
            extend the turns before it.
        position: the first token position that differs there.
        reason: why, in words (empty when contiguous).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    contiguous: bool
    policy_turns: int = 0
    generated_tokens: int = 0
    broken_turn: int | None = None
    position: int | None = None
    reason: str = ""


def policy_items(items: Sequence[Any]) -> list[tuple[int, Mapping[str, Any]]]:
    """`(index, item)` of the Responses input items that carry a policy turn's tokens.

    An assistant turn's fields sit on its last item (a message, or its last
    function call), as NeMo-Gym places them.
    """
    return [
        (index, item)
        for index, item in enumerate(items)
        if isinstance(item, Mapping) and item.get("generation_token_ids")
    ]


def check_contiguity(items: Sequence[Any]) -> Contiguity | None:
    """Check a rollout's Responses input items; None when no item carries token ids.

    Raises:
        ValueError: a token field is not a list of ids (or logprobs), or
            the logprobs do not align with the ids.
    """
    turns = policy_items(items)
    if not turns:
        return None
    # Each turn is compared with the one before it only: by induction, that
    # turn's prompt and generation are everything seen so far. Arrays compare
    # (and slice) at C speed; this runs on every record.
    before: tuple[array[int], array[int]] | None = None
    # Where each span of the history came from, to say what a break re-tokenized.
    spans: list[tuple[int, int, str]] = []
    generated = 0
    broken: Contiguity | None = None
    for turn, (index, item) in enumerate(turns, start=1):
        prompt, generation = _checked(item, f"input[{index}]")
        generated += len(generation)
        if broken is not None:
            continue
        if before is not None:
            seen_prompt, seen_generation = before
            cut, end = len(seen_prompt), len(seen_prompt) + len(seen_generation)
            if (
                len(prompt) < end
                or prompt[:cut] != seen_prompt
                or prompt[cut:end] != seen_generation
            ):
                seen = seen_prompt.tolist() + seen_generation.tolist()
                mine = prompt.tolist()
                position = next(
                    (i for i, (a, b) in enumerate(zip(mine, seen, strict=False)) if a != b),
                    min(len(mine), len(seen)),
                )
                broken = Contiguity(
                    contiguous=False,
                    broken_turn=turn,
                    position=position,
                    reason=_break_reason(turn, position, mine, seen, spans),
                )
                continue
        start = spans[-1][1] if spans else 0
        spans.append((start, len(prompt), f"the prompt added before turn {turn}"))
        spans.append((len(prompt), len(prompt) + len(generation), f"turn {turn}'s generation"))
        before = (prompt, generation)
    if broken is not None:
        return broken.model_copy(update={"policy_turns": len(turns), "generated_tokens": generated})
    return Contiguity(contiguous=True, policy_turns=len(turns), generated_tokens=generated)


def _ids_array(value: Any) -> array[int] | None:
    if not isinstance(value, list):
        return None
    try:
        return array("Q", value)
    except (TypeError, OverflowError):
        return None


def _checked(item: Mapping[str, Any], where: str) -> tuple[array[int], array[int]]:
    """A policy item's prompt and generation as arrays, every field checked.

    Raises:
        ValueError: as `token_fields`.
    """
    prompt = _ids_array(item.get("prompt_token_ids"))
    generation = _ids_array(item.get("generation_token_ids"))
    for name, value in (("prompt_token_ids", prompt), ("generation_token_ids", generation)):
        if value is None:
            raise ValueError(f"{where}.{name}: expected a list of token ids (integers >= 0)")
    assert prompt is not None and generation is not None
    logprobs = item.get("generation_log_probs")
    if not is_logprobs(logprobs):
        raise ValueError(f"{where}.generation_log_probs: expected a list of numbers")
    assert isinstance(logprobs, list)
    if len(logprobs) != len(generation):
        raise ValueError(
            f"{where}.generation_log_probs: {len(logprobs)} values for "
            f"{len(generation)} generated tokens"
        )
    return prompt, generation


def _break_reason(
    turn: int, position: int, prompt: list[int], seen: list[int], spans: list[tuple[int, int, str]]
) -> str:
    if position >= len(prompt):
        return (
            f"turn {turn}'s prompt has {len(prompt)} tokens, fewer than the {len(seen)} "
            "of the turns before it (history truncated or stripped)"
        )
    where = next((what for start, end, what in spans if start <= position < end), "the history")
    return (
        f"turn {turn}'s prompt differs at token {position}, inside {where}: "
        f"{prompt[position]} where {seen[position]} was (re-tokenized; pass the token ids back)"
    )


def token_fields(item: Mapping[str, Any], where: str) -> tuple[list[int], list[int], list[float]]:
    """The three fields of one policy item, checked.

    Raises:
        ValueError: a field is missing or malformed, or the logprobs do not
            align with the generated ids.
    """
    _checked(item, where)
    return item["prompt_token_ids"], item["generation_token_ids"], item["generation_log_probs"]
