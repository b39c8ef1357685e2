"""convo-sim: simulated multi-turn dialogues between an assistant and a simulated user.

The public API is re-exported here; everything else is an implementation
detail of its module.
"""

from __future__ import annotations

from convo_sim.actors import Actor, View
from convo_sim.backends import LocalBackend, RayBackend
from convo_sim.completion import (
    DEFAULT_STOP_TOKEN,
    CompletionContext,
    Stop,
    any_of,
    completion_phrases,
    state_predicate,
    stop_token,
)
from convo_sim.errors import (
    ConvoSimError,
    EmptyReplyError,
    InputError,
    ModelError,
    RolloutError,
    ScenarioError,
    ScriptExhausted,
)
from convo_sim.logging import configure_logging
from convo_sim.messages import Message, Role, ToolCall, Transcript
from convo_sim.metrics import Summary, pass_at_k, pass_hat_k, summarize
from convo_sim.models import ChatModel, Completion, ModelSettings
from convo_sim.orchestrator import run_dialogue
from convo_sim.progress import Progress
from convo_sim.records import Rollout
from convo_sim.rescore import rescore
from convo_sim.results import (
    DialogueResult,
    ErrorInfo,
    TerminationReason,
    Timing,
    TurnScore,
    Usage,
    Verdict,
)
from convo_sim.retry import RetryPolicy
from convo_sim.rollouts import (
    RolloutPlan,
    RolloutStream,
    generate_rollouts_sync,
    open_rollouts,
    sample_seed,
)
from convo_sim.sink import RolloutSink, WriteStats, read_rollouts, write_rollouts
from convo_sim.verification import (
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

__version__ = "0.1.0"

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
    "ModelSettings",
    "Progress",
    "RayBackend",
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
