"""The one retry policy for model calls: tenacity, jittered exponential backoff.

Retries live in exactly one layer. The OpenAI adapter turns the SDK's own
retries off (`max_retries=0`) and wraps each request in `RetryPolicy.call`,
so attempts are never multiplied.

The policy itself knows nothing about HTTP libraries: the caller passes a
`classify` function that says whether an exception is transient (and, for
a 429, how long the server asked us to wait). Anything `classify` does not
call transient is raised at once. Cancellation is never retried: it is not
an `Exception`, so it is never offered to `classify`.
"""

from __future__ import annotations

import email.utils
import math
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
import tenacity

from convo_sim._logging import get_logger

__all__ = ["RetryPolicy", "Transient", "parse_retry_after"]

_log = get_logger("convo_sim.retry")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Transient:
    """What `classify` says about an exception worth retrying.

    Attributes:
        status: the HTTP status, when the server answered.
        retry_after: seconds the server asked us to wait, if it said so.
    """

    status: int | None = None
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently to retry a transient failure.

    The n-th retry waits `min(max_wait, initial * 2**(n-1)) + uniform(0, jitter)`
    seconds, unless the server sent `Retry-After`, which is honoured up to
    `max_retry_after` seconds.

    Attributes:
        attempts: total attempts, the first one included (1 = no retries).
        initial: the first backoff, in seconds.
        max_wait: the largest backoff, in seconds (before jitter).
        jitter: the largest random addition to each backoff, in seconds; it
            spreads out the retries of many dialogues that failed together.
        max_retry_after: the cap on a server's `Retry-After`, in seconds.
    """

    attempts: int = 5
    initial: float = 0.5
    max_wait: float = 20.0
    jitter: float = 0.5
    max_retry_after: float = 60.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts must be at least 1, got {self.attempts!r}")
        for name in ("initial", "max_wait", "jitter", "max_retry_after"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")

    def backoff(self, retry: int) -> float:
        """Seconds to wait before the `retry`-th retry (1-based), jitter included."""
        base = min(self.max_wait, self.initial * 2.0 ** (retry - 1))
        return base + random.uniform(0.0, self.jitter) if self.jitter else base

    def wait_for(self, retry: int, transient: Transient) -> float:
        """Seconds to wait before the `retry`-th retry of `transient`.

        A server's wait that is no finite number (`retry-after-ms: nan`) is
        as unreadable as no wait at all: the usual backoff applies.
        """
        after = transient.retry_after
        if after is not None and math.isfinite(after):
            return min(max(after, 0.0), self.max_retry_after)
        return self.backoff(retry)

    async def call(
        self,
        fn: Callable[[], Awaitable[T]],
        *,
        classify: Callable[[Exception], Transient | None],
        give_up: Callable[[Exception, int], Exception],
        log_fields: Mapping[str, Any] | None = None,
    ) -> T:
        """Await `fn()` until it succeeds, fails for good, or attempts run out.

        Every retry is logged as `model.retry` with the attempt that failed,
        the wait, the error's type and the HTTP status, never its message
        (servers echo request data, API keys included, into error text).

        Args:
            fn: makes one attempt.
            classify: returns a `Transient` for errors worth retrying, else None.
            give_up: turns the last error and the number of attempts made
                into the exception to raise.
            log_fields: extra key-values for the `model.retry` events.

        Returns:
            What `fn` returned.

        Raises:
            Exception: `give_up(error, attempts)` when a non-transient error
                occurs or the attempts are used up.
        """
        # The first attempt runs outside tenacity: building its machinery
        # costs about as much CPU as a whole loopback request, and most
        # calls succeed at once. A failure is replayed as tenacity's first
        # attempt, so waits, logs and counts are what they would have been.
        try:
            return await fn()
        except Exception as exc:  # cancellation is a BaseException and passes through
            first: Exception | None = exc
        fields = dict(log_fields or {})
        attempts = 0

        async def attempt() -> T:
            nonlocal attempts, first
            attempts += 1
            if first is not None:
                failed, first = first, None
                raise failed
            return await fn()

        def should_retry(exc: BaseException) -> bool:
            return isinstance(exc, Exception) and classify(exc) is not None

        def wait(state: tenacity.RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            transient = classify(exc) if isinstance(exc, Exception) else None
            return self.wait_for(state.attempt_number, transient or Transient())

        def before_sleep(state: tenacity.RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            transient = classify(exc) if isinstance(exc, Exception) else None
            _log.warning(
                "model.retry",
                attempt=state.attempt_number,
                attempts=self.attempts,
                wait_s=round(state.upcoming_sleep, 3),
                error=type(exc).__name__,
                status=transient.status if transient else None,
                **fields,
            )

        retrying = tenacity.AsyncRetrying(
            stop=tenacity.stop_after_attempt(self.attempts),
            wait=wait,
            retry=tenacity.retry_if_exception(should_retry),
            before_sleep=before_sleep,
            sleep=anyio.sleep,
            reraise=True,
        )
        try:
            return await retrying(attempt)
        except Exception as exc:  # cancellation is a BaseException and passes through
            raise give_up(exc, attempts) from None


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header (seconds or an HTTP date).

    Returns None when the header is missing or unreadable; a date in the
    past means 0.
    """
    if value is None:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # RFC 9110 dates are GMT; be lenient about a missing zone
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return max(seconds, 0.0)
