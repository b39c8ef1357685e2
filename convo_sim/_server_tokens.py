"""Token ids and logprobs on the bundled server's chat completions, as vLLM serves them.

Whatever model answers, the server layer (never the model) turns the
request and the reply into ids with `ChatTokenizer` and adds, on request,
the fields vLLM's OpenAI-compatible server returns
(`vllm/entrypoints/openai/chat_completion/protocol.py`):

* `return_token_ids: true`: top-level `prompt_token_ids` and
  `choices[0].token_ids` (vLLM >= 0.10.2);
* `logprobs: true` (`top_logprobs` alternatives, default 0):
  `choices[0].logprobs.content[j]` = `{token, logprob, bytes, top_logprobs}`,
  where `token` is `"token_id:<id>"` with `return_tokens_as_token_ids: true`.

With token fields the usage counts tokens, not words. An assistant message
of the request that carries `prompt_token_ids` and `generation_token_ids`
(NeMo-Gym's on-policy pass-back) is honoured the way NeMo-RL's server does
it: the last such pair replaces the template of everything up to that
reply. `TokenOptions` turns on drift and can make the server ignore the
passed-back ids, as stock vLLM does. The server also answers vLLM's
`POST /tokenize` and `POST /detokenize`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic_core import PydanticSerializationError, to_json

from convo_sim._messages import Message
from convo_sim._tokens import ChatTokenizer, carried_ids, message_body

__all__ = [
    "TokenOptions",
    "add_token_fields",
    "detokenize",
    "encode_reply",
    "tokenize",
    "wants_tokens",
]

# vLLM reports its context length on /tokenize; this tokenizer has none.
_MAX_MODEL_LEN = 1 << 20


@dataclass(frozen=True, slots=True)
class TokenOptions:
    """How the bundled server tokenizes.

    Attributes:
        drift: generations are spelled in a segmentation the tokenizer never
            produces (as a sampled model's are), so templating an earlier
            reply again changes its ids; passing them back avoids it.
        honour_token_ids: build the prompt from the ids an earlier
            assistant message carries (NeMo-RL's server does); False ignores
            them, as stock vLLM does.
    """

    drift: bool = False
    honour_token_ids: bool = True

    def tokenizer(self) -> ChatTokenizer:
        """The tokenizer these options describe."""
        return ChatTokenizer(drift=self.drift)


def wants_tokens(body: Mapping[str, Any]) -> bool:
    """True when a chat request asks for token ids or logprobs."""
    return body.get("return_token_ids") is True or body.get("logprobs") is True


def _body_of(message: Message) -> str:
    return message_body(message.content, ((c.name, c.arguments) for c in message.tool_calls))


def prompt_ids(
    tokenizer: ChatTokenizer,
    raw: Sequence[Any],
    messages: Sequence[Message],
    *,
    honour: bool,
    add_generation_prompt: bool = True,
) -> list[int]:
    """The prompt of a chat request: `raw` is its `messages`, `messages` the same parsed.

    Raises:
        ValueError: a passed-back token field is malformed.
    """
    index, prefix = carried_ids(raw, tokenizer.vocab_size)
    if not honour:
        index, prefix = -1, []
    rest = [(m.role, _body_of(m)) for m in messages[index + 1 :]]
    return tokenizer.prompt(rest, prefix=prefix, add_generation_prompt=add_generation_prompt)


def add_token_fields(
    data: dict[str, Any],
    body: Mapping[str, Any],
    messages: Sequence[Message],
    reply: Message,
    tokenizer: ChatTokenizer,
    options: TokenOptions,
) -> None:
    """Add the token fields `body` asks for to the `chat.completion` object `data`.

    Raises:
        ValueError: a passed-back token field is malformed.
    """
    raw = body.get("messages")
    prompt = prompt_ids(
        tokenizer, raw if isinstance(raw, list) else [], messages, honour=options.honour_token_ids
    )
    generation = tokenizer.generation(_body_of(reply))
    choice = data["choices"][0]
    if body.get("return_token_ids") is True:
        data["prompt_token_ids"] = prompt
        choice["token_ids"] = generation
    if body.get("logprobs") is True:
        top = body.get("top_logprobs")
        alternatives = top if type(top) is int and 0 < top <= 20 else 0
        as_ids = body.get("return_tokens_as_token_ids") is True
        values = tokenizer.logprobs(generation, len(prompt))
        if alternatives:
            content = [
                _logprob_entry(tokenizer, token, value, as_ids, alternatives)
                for token, value in zip(generation, values, strict=True)
            ]
        else:  # the usual request (NeMo-Gym's): the entries from a table
            names = _names(tokenizer, as_ids)
            content = [
                {"token": names[t][0], "logprob": v, "bytes": names[t][1], "top_logprobs": []}
                for t, v in zip(generation, values, strict=True)
            ]
        choice["logprobs"] = {"content": content}
    completion_tokens = len(generation)
    data["usage"] = {
        "prompt_tokens": len(prompt),
        "completion_tokens": completion_tokens,
        "total_tokens": len(prompt) + completion_tokens,
    }


_NAMES: dict[tuple[int, bool], list[tuple[str, list[int]]]] = {}


def _names(tokenizer: ChatTokenizer, as_ids: bool) -> list[tuple[str, list[int]]]:
    """Each token's `token` string and `bytes`, by id (made once per vocabulary)."""
    key = (tokenizer.vocab_size, as_ids)
    names = _NAMES.get(key)
    if names is None:
        names = [
            (
                f"token_id:{token}"
                if as_ids
                else tokenizer.token_bytes(token).decode("utf-8", "replace"),
                list(tokenizer.token_bytes(token)),
            )
            for token in range(tokenizer.vocab_size)
        ]
        _NAMES[key] = names
    return names


def encode_reply(data: Mapping[str, Any]) -> bytes:
    """A reply with token fields as JSON: pydantic-core writes its numbers several
    times faster than json; json stays the fallback (text it cannot write as UTF-8)."""
    try:
        return to_json(data)
    except (PydanticSerializationError, ValueError):
        return json.dumps(data, separators=(",", ":")).encode()


def _logprob_entry(
    tokenizer: ChatTokenizer, token: int, value: float, as_ids: bool, alternatives: int
) -> dict[str, Any]:
    raw = tokenizer.token_bytes(token)
    entry: dict[str, Any] = {
        "token": f"token_id:{token}" if as_ids else raw.decode("utf-8", "replace"),
        "logprob": value,
        "bytes": list(raw),
        "top_logprobs": [],
    }
    if alternatives:
        # The chosen token first, then made-up runners-up, each less likely.
        others = [(token + k) % tokenizer.vocab_size for k in range(alternatives)]
        entry["top_logprobs"] = [
            {
                "token": f"token_id:{other}"
                if as_ids
                else tokenizer.token_bytes(other).decode("utf-8", "replace"),
                "logprob": value - k,
                "bytes": list(tokenizer.token_bytes(other)),
            }
            for k, other in enumerate(others)
        ]
    return entry


def tokenize(
    body: Mapping[str, Any],
    messages: Sequence[Message] | None,
    tokenizer: ChatTokenizer,
    *,
    honour: bool,
) -> dict[str, Any]:
    """The answer to vLLM's `POST /tokenize`: `{count, max_model_len, tokens, token_strs}`.

    `messages` is the parsed chat of a chat request, None for a `prompt` request.

    Raises:
        ValueError: the body is neither request shape, or a token field is malformed.
    """
    if messages is not None:
        raw = body.get("messages")
        add = body.get("add_generation_prompt", True) is not False
        tokens = prompt_ids(
            tokenizer,
            raw if isinstance(raw, list) else [],
            messages,
            honour=honour,
            add_generation_prompt=add,
        )
    else:
        prompt = body.get("prompt")
        if not isinstance(prompt, str):
            raise ValueError("/tokenize needs 'messages' (a list) or 'prompt' (a string)")
        tokens = tokenizer.encode(prompt)
    strs = None
    if body.get("return_token_strs") is True:
        strs = [tokenizer.token_bytes(t).decode("utf-8", "replace") for t in tokens]
    return {
        "count": len(tokens),
        "max_model_len": _MAX_MODEL_LEN,
        "tokens": tokens,
        "token_strs": strs,
    }


def detokenize(body: Mapping[str, Any], tokenizer: ChatTokenizer) -> dict[str, Any]:
    """The answer to vLLM's `POST /detokenize`: `{prompt}`.

    Raises:
        ValueError: `tokens` is not a list of ids of this vocabulary.
    """
    tokens = body.get("tokens")
    if not isinstance(tokens, list) or not all(type(t) is int and t >= 0 for t in tokens):
        raise ValueError("/detokenize needs 'tokens', a list of token ids")
    return {"prompt": tokenizer.decode(tokens)}
