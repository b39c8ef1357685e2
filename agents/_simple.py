"""Scripted and function assistants, for tests and scenario scripts."""

from __future__ import annotations

from typing import ClassVar

from convo_sim._actors import ActorRole
from convo_sim._simple import FunctionActor, ScriptedActor

__all__ = ["FunctionAssistant", "ScriptedAssistant"]


class ScriptedAssistant(ScriptedActor):
    """An assistant that replays a script (raises when it runs out, by default)."""

    role: ClassVar[ActorRole] = "assistant"


class FunctionAssistant(FunctionActor):
    """An assistant whose replies come from `fn(view)`, sync or async."""

    role: ClassVar[ActorRole] = "assistant"
