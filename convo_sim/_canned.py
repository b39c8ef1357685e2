"""A served model that answers every request with the same short text.

`convo-sim serve --canned` serves it (as model `canned`, under any name a
client asks for), optionally after a fixed delay, so that a benchmark
measures the client and the network path, not a model: the reply costs the
server next to nothing and always takes the same time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import anyio

from convo_sim._messages import Message

__all__ = ["CANNED_MODEL", "CannedModel"]

CANNED_MODEL = "canned"
"""The model name `convo-sim serve --canned` serves the canned reply under."""


class CannedModel:
    """Answers with `text` after `latency` seconds, whatever it was sent.

    Args:
        text: the reply.
        latency: seconds to wait before answering (0: answer at once); a
            stand-in for a model's generation time.
    """

    def __init__(self, text: str = "ok", *, latency: float = 0.0) -> None:
        if not latency >= 0:
            raise ValueError(f"latency must be >= 0 seconds, got {latency!r}")
        self.text = text
        self.latency = latency
        self._reply = Message(role="assistant", content=text)

    async def reply(self, messages: Sequence[Message], body: Mapping[str, Any]) -> Message:
        """Wait the fixed latency, then return the canned text.

        Raises:
            ValueError: never; the signature follows `ServedModel`.
        """
        if self.latency:
            await anyio.sleep(self.latency)
        return self._reply
