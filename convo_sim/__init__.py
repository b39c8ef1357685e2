"""convo-sim: simulated multi-turn dialogues between an assistant and a simulated user.

The public API is re-exported here; everything else is an implementation
detail of its module.
"""

from __future__ import annotations

import typing as _typing

from convo_sim._actors import Actor, View
from convo_sim._completion import (
    DEFAULT_STOP_TOKEN,
    CompletionContext,
    Stop,
    any_of,
    completion_phrases,
    state_predicate,
    stop_token,
)
from convo_sim._errors import (
    ConvoSimError,
    EmptyReplyError,
    InputError,
    ModelError,
    RolloutError,
    ScenarioError,
    ScriptExhausted,
)
from convo_sim._logging import configure_logging
from convo_sim._messages import Message, Role, ToolCall, Transcript
from convo_sim._metrics import Summary, pass_at_k, pass_hat_k, summarize
from convo_sim._models import ChatModel, Completion, ModelSettings
from convo_sim._orchestrator import run_dialogue
from convo_sim._pool import ModelPool, ReplicaStats
from convo_sim._progress import Progress
from convo_sim._records import Rollout
from convo_sim._rescore import rescore
from convo_sim._results import (
    DialogueResult,
    ErrorInfo,
    TerminationReason,
    Timing,
    TurnScore,
    Usage,
    Verdict,
)
from convo_sim._retry import RetryPolicy
from convo_sim._rollouts import (
    RolloutPlan,
    RolloutStream,
    generate_rollouts_sync,
    open_rollouts,
    sample_seed,
)
from convo_sim._sink import RolloutSink, WriteStats, iter_rollouts, read_rollouts, write_rollouts
from convo_sim._verification import (
    NO_FINAL_REPLY,
    FinalContext,
    FinalVerifier,
    TurnContext,
    TurnVerifier,
    all_of,
    cumulative,
    final_only,
    final_reply,
)
from convo_sim.backends import LocalBackend, RayBackend

if _typing.TYPE_CHECKING:
    from convo_sim._openai_model import OpenAIChatModel

__version__ = "0.1.0"


def __getattr__(name: str) -> _typing.Any:
    # Imported on first use: it imports `openai`, which a program that never
    # talks to a model should not pay for.
    if name == "OpenAIChatModel":
        from convo_sim._openai_model import OpenAIChatModel

        return OpenAIChatModel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_STOP_TOKEN",
    "NO_FINAL_REPLY",
    "Actor",
    "ChatModel",
    "Completion",
    "CompletionContext",
    "ConvoSimError",
    "DialogueResult",
    "EmptyReplyError",
    "ErrorInfo",
    "FinalContext",
    "FinalVerifier",
    "InputError",
    "LocalBackend",
    "Message",
    "ModelError",
    "ModelPool",
    "ModelSettings",
    "OpenAIChatModel",
    "Progress",
    "RayBackend",
    "ReplicaStats",
    "RetryPolicy",
    "Role",
    "Rollout",
    "RolloutError",
    "RolloutPlan",
    "RolloutSink",
    "RolloutStream",
    "ScenarioError",
    "ScriptExhausted",
    "Stop",
    "Summary",
    "TerminationReason",
    "Timing",
    "ToolCall",
    "Transcript",
    "TurnContext",
    "TurnScore",
    "TurnVerifier",
    "Usage",
    "Verdict",
    "View",
    "WriteStats",
    "all_of",
    "any_of",
    "completion_phrases",
    "configure_logging",
    "cumulative",
    "final_only",
    "final_reply",
    "generate_rollouts_sync",
    "iter_rollouts",
    "open_rollouts",
    "pass_at_k",
    "pass_hat_k",
    "read_rollouts",
    "rescore",
    "run_dialogue",
    "sample_seed",
    "state_predicate",
    "stop_token",
    "summarize",
    "write_rollouts",
]
