"""A deterministic offline tokenizer and chat template for the bundled server.

`convo-sim serve` returns token ids and logprobs the way vLLM does (see
`convo_sim._server_tokens`), so capture, the contiguity check and the
exports run end to end with no model and no download. The ids come from
this module:

* **Vocabulary.** Ids 0-255 are the bytes of UTF-8 text; then the special
  tokens `<|start|>` and `<|end|>` (the end-of-sequence token) and one token
  per role; then a fixed list of common English fragments ("merges"), so
  that, as with a real BPE vocabulary, one text has several segmentations
  and `encode` picks one of them (greedy longest match).
* **Template.** A message is `<|start|>`, its role token, its body (the
  text, then each tool call as `<tool_call>{json}</tool_call>`) and
  `<|end|>`; a prompt is its messages followed by `<|start|>` and the
  assistant's role token (the generation prompt). A generation is the reply
  body and `<|end|>`, so one turn's prompt plus its generation is exactly
  the template of the dialogue up to that reply.
* **Drift.** A real model samples token by token and need not produce the
  segmentation the tokenizer would: "hello" may come out as "hel" + "lo".
  With `drift=True` a generation is spelled byte by byte, which `encode`
  never produces, so re-tokenizing an earlier reply changes its ids unless
  they are passed back: what NeMo-RL's contiguity check exists to catch.
* **Logprobs** are pseudo-values, a fixed function of the token and its
  position (the served models are rules, not distributions); they are
  deterministic, finite and negative, enough to test alignment.

Prompts are built the way NeMo-RL's server does on-policy correction: when
an earlier assistant message carries `prompt_token_ids` and
`generation_token_ids`, the last such pair stands for everything up to and
including that reply, and only the messages after it are templated.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeGuard

from convo_sim._capture import is_ids

__all__ = ["ChatTokenizer", "carried_ids", "message_body"]

_ROLES = ("system", "developer", "user", "assistant", "tool")
# Common fragments of English and of the calendar domain's replies. Their
# order fixes their ids: append, never reorder.
_MERGES = (
    "the", " the", "The", "ing", "and", " and", "er", "in", "on", " on", "at", " at",
    "es", "ed", "to", " to", "re", "en", "an", "or", "is", " is", "it", " it", "ou",
    " a", " an", "of", " of", "for", " for", "you", " you", "You", "your", " your",
    "with", " with", "have", " have", "that", " that", "this", " this", "can", " can",
    "be", " be", "st", "le", "ar", "al", "ent", "ion", "tion", "ation", "ll", "ve",
    "me", " me", "my", " my", "I ", "I'", "'s", "n't", "e ", "s ", "d ", "t ", "y ",
    ". ", ", ", ": ", "? ", "! ", "  ", "\n\n", "00", "30", "15", "45", ":00", ":30",
    "am", "pm", " am", " pm", "event", " event", "calendar", " calendar", "meeting",
    " meeting", "call", " call", "lunch", " lunch", "minute", " minutes", "hour",
    " hours", "Add", " add", "add", "time", " time", "day", " day", "please",
    " please", "Please", "thank", "Thank", " thanks", "Thanks", "id", " id",
    "event_id", "duration", "start", "\": ", "\", ", "{\"", "\"}", "},",
    "###", "STOP", "<tool_call>", "</tool_call>",
)  # fmt: skip
_FIELDS = ("prompt_token_ids", "generation_token_ids")


def message_body(content: str | None, tool_calls: Iterable[tuple[str, str]] = ()) -> str:
    """The text a message's body is templated from: its content, then its tool calls."""
    calls = "".join(
        "<tool_call>"
        + json.dumps({"name": name, "arguments": arguments}, separators=(",", ":"))
        + "</tool_call>"
        for name, arguments in tool_calls
    )
    return (content or "") + calls


def carried_ids(messages: Sequence[Mapping[str, Any]], vocab_size: int) -> tuple[int, list[int]]:
    """Where the last assistant message carrying token ids is, and its ids.

    Returns `(index, prompt_token_ids + generation_token_ids)`, or `(-1, [])`
    when no assistant message carries both fields.

    Raises:
        ValueError: a carried field is not a list of token ids of this vocabulary.
    """
    for index in range(len(messages) - 1, -1, -1):
        message = messages[index]
        if not isinstance(message, Mapping) or message.get("role") != "assistant":
            continue
        prompt = message.get("prompt_token_ids")
        generation = message.get("generation_token_ids")
        if prompt is None and generation is None:
            continue
        ids: list[int] = []
        for name, value in zip(_FIELDS, (prompt, generation), strict=True):
            if not _in_vocabulary(value, vocab_size):
                raise ValueError(
                    f"messages[{index}].{name} must be a list of token ids "
                    f"between 0 and {vocab_size - 1}"
                )
            ids += value
        return index, ids
    return -1, []


def _in_vocabulary(value: Any, vocab_size: int) -> TypeGuard[list[int]]:
    return is_ids(value) and (not value or max(value) < vocab_size)


class ChatTokenizer:
    """The bundled server's tokenizer and chat template (see the module docstring).

    Stateless after construction; one instance serves every request.

    Args:
        drift: spell generations byte by byte, a segmentation `encode` never
            produces, so that templating an earlier reply again changes its ids.
    """

    START = 256
    END = 257
    """The end-of-sequence token: every generation ends with it."""

    def __init__(self, *, drift: bool = False) -> None:
        self.drift = drift
        self._role_ids = {role: 258 + i for i, role in enumerate(_ROLES)}
        first = 258 + len(_ROLES)
        self._merge_ids = {text: first + i for i, text in enumerate(_MERGES)}
        self._table = {**{chr(b): b for b in range(128)}, **self._merge_ids}
        longest_first = sorted(_MERGES, key=len, reverse=True)
        self._pieces_re = re.compile("|".join(map(re.escape, longest_first)) + "|.", re.DOTALL)
        self.vocab_size = first + len(_MERGES)
        pieces: list[bytes] = [bytes((b,)) for b in range(256)]
        pieces += [b"<|start|>", b"<|end|>"]
        pieces += [role.encode() for role in _ROLES]
        pieces += [text.encode() for text in _MERGES]
        self._pieces = pieces

    # -- text <-> ids ----------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        """The canonical ids of `text`: the longest known fragment at each point.

        Characters outside the fragments are their UTF-8 bytes (a lone
        surrogate, which JSON can carry, its surrogate-pass bytes).
        """
        # The alternation lists the fragments longest first, so at each point
        # the regex engine (in C) takes the longest one that fits.
        table = self._table
        out: list[int] = []
        for piece in self._pieces_re.findall(text):
            token = table.get(piece)
            if token is None:
                out.extend(piece.encode("utf-8", "surrogatepass"))
            else:
                out.append(token)
        return out

    def spell(self, text: str) -> list[int]:
        """`text` byte by byte: a valid segmentation `encode` never produces."""
        return list(text.encode("utf-8", "surrogatepass"))

    def decode(self, ids: Iterable[int]) -> str:
        """The text of `ids` (special tokens as their names).

        Raises:
            ValueError: an id is outside the vocabulary.
        """
        pieces = self._pieces
        try:
            raw = b"".join(pieces[t] for t in ids if t >= 0)
        except (IndexError, TypeError):
            raise ValueError(f"token ids must be integers below {self.vocab_size}") from None
        return raw.decode("utf-8", "replace")

    def token_bytes(self, token: int) -> bytes:
        """The bytes one token stands for."""
        return self._pieces[token]

    # -- the template ----------------------------------------------------------

    def message_ids(self, role: str, body: str) -> list[int]:
        """One templated message: `<|start|>`, role, body, `<|end|>`."""
        role_id = self._role_ids.get(role, self._role_ids["user"])
        return [self.START, role_id, *self.encode(body), self.END]

    def generation_prompt(self) -> list[int]:
        """What a prompt ends with: the start of the assistant's message."""
        return [self.START, self._role_ids["assistant"]]

    def generation(self, body: str) -> list[int]:
        """The ids a reply with this body is generated as (drift: spelled out)."""
        ids = self.spell(body) if self.drift else self.encode(body)
        ids.append(self.END)
        return ids

    def prompt(
        self,
        messages: Sequence[tuple[str, str]],
        *,
        prefix: Sequence[int] = (),
        add_generation_prompt: bool = True,
    ) -> list[int]:
        """The prompt ids of `(role, body)` messages following `prefix`.

        `prefix` is the carried prompt and generation of the last reply the
        client passed back (see `carried_ids`); `messages` are those after
        it. A carried generation cut short (no `<|end|>`) is closed here,
        as the template would close it.
        """
        ids = list(prefix)
        if ids and ids[-1] != self.END:
            ids.append(self.END)
        for role, body in messages:
            ids += self.message_ids(role, body)
        if add_generation_prompt:
            ids += self.generation_prompt()
        return ids

    @staticmethod
    def logprobs(ids: Sequence[int], offset: int) -> list[float]:
        """Pseudo-logprobs of `ids` generated at position `offset` on.

        A fixed function of each token and its position, in [-4.0, -0.001].
        """
        return [
            -0.001 - ((token * 40503 + (offset + i) * 9973) % 4000) / 1000.0
            for i, token in enumerate(ids)
        ]
