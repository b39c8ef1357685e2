"""Scripted and function user simulators, for tests and scenario scripts."""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

from convo_sim._actors import ActorRole
from convo_sim._completion import DEFAULT_STOP_TOKEN
from convo_sim._messages import Message
from convo_sim._simple import FunctionActor, ScriptedActor, WhenDone

__all__ = ["FunctionUser", "ScriptedUser"]


class ScriptedUser(ScriptedActor):
    """A user that replays a script, then sends the stop token by default."""

    role: ClassVar[ActorRole] = "user"

    def __init__(
        self,
        script: Iterable[Message | str],
        *,
        when_done: WhenDone = "stop",
        stop_token: str = DEFAULT_STOP_TOKEN,
    ) -> None:
        super().__init__(script, when_done=when_done, stop_token=stop_token)


class FunctionUser(FunctionActor):
    """A user whose messages come from `fn(view)`, sync or async."""

    role: ClassVar[ActorRole] = "user"
