"""Logging set-up for applications and the CLI.

The library only *emits* structlog events (`dialogue.started`,
`turn.completed`, `dialogue.finished`, `model.retry`, ...); it never calls
`structlog.configure()` on import. Applications call `configure_logging()`
(the CLI does) or configure structlog themselves.

Until structlog is configured, the library's events are dropped: structlog's
own default prints every event to standard output, which would interleave
thousands of lines with a user's program output. `get_logger()` gives the
library's modules loggers that check this at each call (a cheap flag read).

Message content is left out of events unless `log_content=True`: dialogues
may carry personal data, and rollouts are often run at a scale where logs
are kept longer than data. API keys are never logged.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from typing import Any, Literal, TextIO

import structlog

__all__ = ["BoundContext", "configure_logging", "content_logging_enabled", "get_logger"]

_content = False


class _Silent:
    """A logger that drops everything (structlog is not configured yet)."""

    def bind(self, **_: Any) -> _Silent:
        return self

    def _drop(self, *_: Any, **__: Any) -> None:
        return None

    debug = info = warning = warn = error = exception = critical = msg = _drop


_SILENT = _Silent()


class _LibraryLogger:
    """Forwards to `structlog.get_logger(name)` once structlog is configured."""

    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def bind(self, **values: Any) -> Any:
        if not structlog.is_configured():
            return _SILENT
        return structlog.get_logger(self._name).bind(**values)

    def __getattr__(self, method: str) -> Any:
        if not structlog.is_configured():
            return getattr(_SILENT, method)
        return getattr(structlog.get_logger(self._name), method)


class BoundContext:
    """`structlog.contextvars.bound_contextvars(**values)` as one small object.

    structlog's is a generator-based context manager: with many dialogues
    in flight each one held a generator, its frame and two dicts for its
    whole life. This sets the context variables and resets them with their
    tokens, which restores exactly what was there before.
    """

    __slots__ = ("_tokens", "_values")

    def __init__(self, **values: Any) -> None:
        self._values = values
        self._tokens: Mapping[str, Any] = {}

    def __enter__(self) -> None:
        self._tokens = structlog.contextvars.bind_contextvars(**self._values)

    def __exit__(self, *exc_info: object) -> None:
        tokens, self._tokens = self._tokens, {}
        structlog.contextvars.reset_contextvars(**tokens)


def get_logger(name: str) -> Any:
    """The logger for one of the library's modules (silent until configured)."""
    return _LibraryLogger(name)


Level = Literal["debug", "info", "warning", "error"]


def content_logging_enabled() -> bool:
    """Whether message content may be included in log events."""
    return _content


def configure_logging(
    level: Level = "info",
    *,
    json: bool = False,
    log_content: bool = False,
    stream: TextIO | None = None,
) -> None:
    """Configure structlog for an application.

    Args:
        level: the lowest level written; events below it cost almost nothing.
        json: one JSON object per line instead of the console format.
        log_content: include message content in `turn.completed` events.
        stream: where to write (standard error by default, so that standard
            output stays free for results).
    """
    global _content
    _content = log_content
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=structlog.PrintLoggerFactory(stream or sys.stderr),
        # No caching: an application may reconfigure, and the orchestrator
        # binds one concrete logger per dialogue anyway.
        cache_logger_on_first_use=False,
    )
