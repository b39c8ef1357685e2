"""Which dialogue a model call belongs to, for routing that keeps a dialogue on one replica.

`run_dialogue` opens a `dialogue_scope` around its actor tasks; the tasks
copy the context when they start, so every model call an actor makes sees
the same `DialogueScope` through `current_dialogue()`. A `ModelPool` binds
the scope to the replica that serves the dialogue's first request and
sends the rest of the dialogue there; when the dialogue ends the scope
releases its bindings, so a pool holds nothing for dialogues that are over.

A context variable of our own rather than structlog's: reading structlog's
context builds a dict on every call, and routing must not depend on how
logging is configured.
"""

from __future__ import annotations

from contextvars import ContextVar, Token
from types import TracebackType
from typing import Protocol

__all__ = ["DialogueScope", "Releasable", "current_dialogue", "dialogue_scope"]


class Releasable(Protocol):
    """What holds a binding on a dialogue: told once when the dialogue ends."""

    def release_binding(self, scope: DialogueScope, replica: int) -> None: ...


class DialogueScope:
    """One dialogue's identity and the replicas it is bound to (at most one per pool).

    A context manager: model calls made inside it (and in tasks started
    inside it) belong to this dialogue; leaving it releases the bindings,
    however it is left. A class rather than a generator-based context
    manager: one small object per dialogue in flight.

    Attributes:
        dialogue_id: the id bound to the dialogue's log events.
    """

    __slots__ = ("_more", "_pool", "_replica", "_token", "dialogue_id")

    def __init__(self, dialogue_id: str) -> None:
        self.dialogue_id = dialogue_id
        # Most dialogues use no pool and most that do use one: its binding
        # takes two slots, and a dict exists only for a second pool.
        self._pool: Releasable | None = None
        self._replica = 0
        self._more: dict[Releasable, int] | None = None
        self._token: Token[DialogueScope | None] | None = None

    def __enter__(self) -> DialogueScope:
        self._token = _CURRENT.set(self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        token, self._token = self._token, None
        if token is not None:
            _CURRENT.reset(token)
        self.release()

    def replica_for(self, pool: Releasable) -> int | None:
        """The replica `pool` bound this dialogue to, if any."""
        if self._pool is pool:
            return self._replica
        more = self._more
        return None if more is None else more.get(pool)

    def bind(self, pool: Releasable, replica: int) -> None:
        """Bind this dialogue to `replica` of `pool` until it ends or is unbound."""
        more = self._more
        if self._pool is pool or (self._pool is None and (more is None or pool not in more)):
            self._pool, self._replica = pool, replica
            return
        if self._more is None:
            self._more = {}
        self._more[pool] = replica

    def unbind(self, pool: Releasable) -> None:
        """Forget the binding to `pool` (the pool itself accounts for it)."""
        if self._pool is pool:
            self._pool = None
        elif self._more is not None:
            self._more.pop(pool, None)

    def release(self) -> None:
        """Tell every pool this dialogue is bound to that it is over (idempotent)."""
        pool, self._pool = self._pool, None
        more, self._more = self._more, None
        if pool is not None:
            pool.release_binding(self, self._replica)
        if more:
            for other, replica in more.items():
                other.release_binding(self, replica)


_CURRENT: ContextVar[DialogueScope | None] = ContextVar("convo_sim_dialogue", default=None)


def current_dialogue() -> DialogueScope | None:
    """The dialogue the running task works for, or None outside any dialogue."""
    return _CURRENT.get()


def dialogue_scope(dialogue_id: str) -> DialogueScope:
    """`with dialogue_scope(id):` model calls in the block belong to one dialogue.

    Tasks started inside copy the context, so they keep seeing the scope;
    bindings are released when the block is left, however it is left.
    """
    return DialogueScope(dialogue_id)
