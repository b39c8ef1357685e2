"""convo-sim: simulated multi-turn dialogues between an assistant and a simulated user.

The core's public API is re-exported here (modules with a leading
underscore are private). The rest of the surface: `convo_sim.domains`
(the `Domain` seam; `convo_sim.domains.calendar`, the first domain),
`convo_sim.agents`, `convo_sim.users`, `convo_sim.verifiers`,
`convo_sim.scenarios`, `convo_sim.server`, `convo_sim.testing`,
`convo_sim.openai_model` and `convo_sim.integrations` (trainer adapters
over `DialogueEnv`, each needing its extra), each with its `__all__`.
"""

from __future__ import annotations

import typing as _typing

from convo_sim._actors import Actor, View
from convo_sim._capture import Contiguity, check_contiguity
from convo_sim._collect import RolloutBatch, collect
from convo_sim._completion import (
    DEFAULT_STOP_TOKEN,
    CompletionContext,
    Stop,
    any_of,
    completion_phrases,
    state_predicate,
    stop_token,
)
from convo_sim._env import DialogueEnv, EnvStep, StepInfo, SyncDialogueEnv
from convo_sim._errors import (
    ConvoSimError,
    EmptyReplyError,
    InputError,
    ModelError,
    RolloutError,
    ScenarioError,
    ScriptExhausted,
    TokenCaptureError,
    UnknownDomainError,
)
from convo_sim._export import (
    EXPORT_FORMATS,
    ExportFormat,
    ExportStats,
    TokenSample,
    export_rows,
    token_samples,
    write_export,
)
from convo_sim._judging import JudgeCache
from convo_sim._logging import configure_logging
from convo_sim._messages import TOKEN_FIELDS, Message, Role, ToolCall, Transcript
from convo_sim._metrics import Summary, pass_at_k, pass_hat_k, summarize
from convo_sim._models import ChatModel, Completion, ModelSettings
from convo_sim._orchestrator import run_dialogue
from convo_sim._paired import PairedComparison, paired_comparisons
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
    DEFAULT_MAX_TURNS,
    RolloutPlan,
    RolloutStream,
    generate_rollouts_sync,
    open_rollouts,
    sample_seed,
)
from convo_sim._sink import RolloutSink, WriteStats, iter_rollouts, read_rollouts, write_rollouts
from convo_sim._tools import Tool, ToolEnv, ToolError
from convo_sim._user_failure import UserFailureTag, is_simulator_failure
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
    "DEFAULT_MAX_TURNS",
    "DEFAULT_STOP_TOKEN",
    "EXPORT_FORMATS",
    "NO_FINAL_REPLY",
    "TOKEN_FIELDS",
    "Actor",
    "ChatModel",
    "Completion",
    "CompletionContext",
    "Contiguity",
    "ConvoSimError",
    "DialogueEnv",
    "DialogueResult",
    "EmptyReplyError",
    "EnvStep",
    "ErrorInfo",
    "ExportFormat",
    "ExportStats",
    "FinalContext",
    "FinalVerifier",
    "InputError",
    "JudgeCache",
    "LocalBackend",
    "Message",
    "ModelError",
    "ModelPool",
    "ModelSettings",
    "OpenAIChatModel",
    "PairedComparison",
    "Progress",
    "RayBackend",
    "ReplicaStats",
    "RetryPolicy",
    "Role",
    "Rollout",
    "RolloutBatch",
    "RolloutError",
    "RolloutPlan",
    "RolloutSink",
    "RolloutStream",
    "ScenarioError",
    "ScriptExhausted",
    "StepInfo",
    "Stop",
    "Summary",
    "SyncDialogueEnv",
    "TerminationReason",
    "Timing",
    "TokenCaptureError",
    "TokenSample",
    "Tool",
    "ToolCall",
    "ToolEnv",
    "ToolError",
    "Transcript",
    "TurnContext",
    "TurnScore",
    "TurnVerifier",
    "UnknownDomainError",
    "Usage",
    "UserFailureTag",
    "Verdict",
    "View",
    "WriteStats",
    "all_of",
    "any_of",
    "check_contiguity",
    "collect",
    "completion_phrases",
    "configure_logging",
    "cumulative",
    "export_rows",
    "final_only",
    "final_reply",
    "generate_rollouts_sync",
    "is_simulator_failure",
    "iter_rollouts",
    "open_rollouts",
    "paired_comparisons",
    "pass_at_k",
    "pass_hat_k",
    "read_rollouts",
    "rescore",
    "run_dialogue",
    "sample_seed",
    "state_predicate",
    "stop_token",
    "summarize",
    "token_samples",
    "write_export",
    "write_rollouts",
]
