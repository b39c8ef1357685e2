"""The bundled OpenAI-compatible server, for tests and offline runs.

`convo-sim serve` runs it from the command line; from Python,
`serve_models()` runs it inside the current event loop (an async context
manager) and `ServerThread` on a loop of its own. A `FaultPlan` injects
failures (rate limits, 5xx, hangs, malformed bodies, dropped connections)
per model name, predicate or first N requests. `TokenOptions` sets how the
server's deterministic tokenizer (`ChatTokenizer`) makes the token ids and
logprobs of chat completions (drift; whether passed-back ids are honoured).
"""

from __future__ import annotations

from convo_sim._canned import CANNED_MODEL, CannedModel
from convo_sim._faults import Fault, FaultPlan
from convo_sim._served_models import ActorModel, EchoModel, ServedModel, default_models
from convo_sim._server import ModelServer, ServerLimits, ServerThread, serve_models
from convo_sim._server_tokens import TokenOptions
from convo_sim._tokens import ChatTokenizer

__all__ = [
    "CANNED_MODEL",
    "ActorModel",
    "CannedModel",
    "ChatTokenizer",
    "EchoModel",
    "Fault",
    "FaultPlan",
    "ModelServer",
    "ServedModel",
    "ServerLimits",
    "ServerThread",
    "TokenOptions",
    "default_models",
    "serve_models",
]
