"""A served model that answers every request with the same short text.

`convo-sim serve --canned` serves it (as model `canned`, under any name a
client asks for), optionally after a fixed delay, so that a benchmark
measures the client and the network path, not a model: the reply costs the
server next to nothing and always takes the same time.

With a `PrefixCache` it also charges for prefill the way a server with
prefix caching does (vLLM's automatic prefix caching, SGLang's radix
cache): every prompt token not already in the cache adds a fixed delay, so
routing that sends a dialogue back to the replica holding its prefix is
measurably faster, offline (`benchmarks/run.py --only replicas`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import anyio

from convo_sim._messages import Message

__all__ = ["CANNED_MODEL", "CannedModel", "PrefixCache", "prompt_tokens"]

CANNED_MODEL = "canned"
"""The model name `convo-sim serve --canned` serves the canned reply under."""


def prompt_tokens(messages: Sequence[Message]) -> list[str]:
    """The prompt as tokens: per message, its role, then its whitespace-separated words.

    The words are what the server's usage counts; the role marks where a
    message starts, so the same words said by the other side differ.
    """
    tokens: list[str] = []
    for message in messages:
        tokens.append(f"<|{message.role}|>")
        tokens += message.text.split()
    return tokens


class PrefixCache:
    """An LRU of prompt prefixes, kept in blocks of tokens, as a serving engine keeps its KV cache.

    A prompt is cut into blocks of `block` tokens; each block is named by a
    hash of everything up to its end, so a block is found only after the
    same prefix. The cached part of a prompt is its longest run of cached
    blocks from the start. After a request, every full block of the prompt
    and of the reply is cached (the next turn's prompt begins with both),
    and the least recently used blocks are dropped beyond `capacity`
    tokens, a prefix's last blocks before its first. Thread-safe (the server answers large requests on a worker
    thread).

    Args:
        capacity: tokens the cache holds (rounded down to whole blocks).
        block: tokens per block (vLLM's default is 16).

    Attributes:
        queries: prompt tokens looked up so far.
        hits: of those, tokens found in the cache.
    """

    def __init__(self, capacity: int = 2_000_000, *, block: int = 16) -> None:
        if block < 1:
            raise ValueError(f"block must be at least 1 token, got {block!r}")
        if capacity < block:
            raise ValueError(f"capacity must hold at least one block of {block}, got {capacity!r}")
        self.block = block
        self.capacity_blocks = capacity // block
        self.queries = 0
        self.hits = 0
        self._blocks: OrderedDict[int, None] = OrderedDict()
        self._lock = threading.Lock()

    def serve(self, prompt: Sequence[str], reply: Sequence[str]) -> int:
        """Look `prompt` up, then cache it and `reply` after it; the prompt tokens found."""
        size = self.block
        tokens = [*prompt, *reply]
        # Blocks are cut from the start, so the prompt's own whole blocks are
        # the first ones of prompt + reply: one pass names them all.
        names: list[int] = []
        chained = 0
        for start in range(0, len(tokens) - size + 1, size):
            chained = hash((chained, *tokens[start : start + size]))
            names.append(chained)
        in_prompt = len(prompt) // size
        with self._lock:
            blocks = self._blocks
            found = 0
            while found < in_prompt and names[found] in blocks:
                found += 1
            # Deepest first, so that a prompt's first blocks are the most
            # recent: beyond the capacity, a prefix loses its tail before its
            # head (as vLLM frees a request's blocks), and what stays is found.
            for name in reversed(names):
                if name in blocks:
                    blocks.move_to_end(name)
                else:
                    blocks[name] = None
            while len(blocks) > self.capacity_blocks:
                blocks.popitem(last=False)
            cached = found * size
            self.queries += len(prompt)
            self.hits += cached
        return cached

    def metrics(self) -> dict[str, float]:
        """The counters, under the names `GET /metrics` shows them."""
        return {
            "convo_sim_prefix_cache_queries_total": self.queries,
            "convo_sim_prefix_cache_hits_total": self.hits,
        }


class CannedModel:
    """Answers with `text` after `latency` seconds, whatever it was sent.

    Args:
        text: the reply.
        latency: seconds to wait before answering (0: answer at once); a
            stand-in for a model's generation time.
        prefix_cache: charge for prefill: each prompt token not in this
            cache adds `per_token` seconds to the wait.
        per_token: seconds per uncached prompt token (with `prefix_cache`).
    """

    def __init__(
        self,
        text: str = "ok",
        *,
        latency: float = 0.0,
        prefix_cache: PrefixCache | None = None,
        per_token: float = 0.0,
    ) -> None:
        if not latency >= 0:
            raise ValueError(f"latency must be >= 0 seconds, got {latency!r}")
        if not per_token >= 0:
            raise ValueError(f"per_token must be >= 0 seconds, got {per_token!r}")
        self.text = text
        self.latency = latency
        self.prefix_cache = prefix_cache
        self.per_token = per_token
        self._reply = Message(role="assistant", content=text)
        self._reply_tokens = prompt_tokens([self._reply])

    async def reply(self, messages: Sequence[Message], body: Mapping[str, Any]) -> Message:
        """Wait the fixed latency plus the prefill of what is not cached, then answer.

        Raises:
            ValueError: never; the signature follows `ServedModel`.
        """
        delay = self.latency
        cache = self.prefix_cache
        if cache is not None:
            tokens = prompt_tokens(messages)
            delay += (len(tokens) - cache.serve(tokens, self._reply_tokens)) * self.per_token
        if delay:
            await anyio.sleep(delay)
        return self._reply

    def metrics(self) -> Mapping[str, float]:
        """Counters for `GET /metrics`: the prefix cache's, if there is one."""
        return self.prefix_cache.metrics() if self.prefix_cache is not None else {}
