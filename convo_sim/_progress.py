"""A live progress line for rollout runs, on standard error.

On a terminal the line is redrawn in place (`\\r`, at most every
`interval`, 0.1 s by default); otherwise (a log file, CI) a plain line is
written every `interval` (10 s by default) so logs stay readable. Standard
output is never touched: it is kept for results.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

from convo_sim._records import Rollout

__all__ = ["Progress", "format_duration"]


def format_duration(seconds: float) -> str:
    """`H:MM:SS` for a number of seconds (rounded down)."""
    total = int(max(seconds, 0.0))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


class Progress:
    """Shows done/total, rate, mean reward so far and ETA of a rollout run.

    Args:
        stream: where to draw (standard error by default).
        interval: seconds between redraws; default 0.1 on a terminal, 10
            otherwise.
        tty: force in-place redrawing on or off (default: `stream.isatty()`).
        clock: the time source (monotonic seconds), swappable for tests.
        status: called at every redraw; what it returns, if anything, ends
            the line (the CLI shows requests per model replica there).
    """

    def __init__(
        self,
        *,
        stream: TextIO | None = None,
        interval: float | None = None,
        tty: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
        status: Callable[[], str] | None = None,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.interval = interval if interval is not None else (0.1 if self.tty else 10.0)
        self.clock = clock
        self.status = status
        self.total = 0
        self.already_done = 0
        self.done = 0
        self.reward_sum = 0.0
        self.scored = 0
        self._started = clock()
        self._last_draw = float("-inf")
        self._drawn = False
        self._running = False

    def start(self, total: int, *, already_done: int = 0) -> None:
        """Begin a run of `total` samples, `already_done` of them resumed from a file."""
        self.total = total
        self.already_done = already_done
        self.done = 0
        self.reward_sum = 0.0
        self.scored = 0
        self._started = self.clock()
        if total - already_done <= 0 and total > 0:
            # A resumed run with nothing left: one line saying so, no rate.
            self.stream.write(
                f"rollouts {already_done}/{total} (100%) | nothing left to run: "
                "every sample is already in the file\n"
            )
            self.stream.flush()
            return
        self._running = True
        self._draw(force=True)

    def update(self, rollout: Rollout) -> None:
        """Count one finished rollout; redraw when the interval has passed."""
        self.done += 1
        if rollout.reward is not None:
            self.reward_sum += rollout.reward
            self.scored += 1
        self._draw()

    def close(self) -> None:
        """Draw the final state and end the line (nothing if the run never started)."""
        if not self._running:
            return
        self._running = False
        self._draw(force=True)
        if self.tty and self._drawn:
            self.stream.write("\n")
            self.stream.flush()

    def line(self) -> str:
        """The progress line as it is drawn now."""
        finished = self.already_done + self.done
        percent = 100.0 * finished / self.total if self.total else 100.0
        elapsed = self.clock() - self._started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        parts = [f"rollouts {finished}/{self.total} ({percent:.0f}%)", f"{rate:.1f}/s"]
        if self.scored:
            parts.append(f"mean reward {self.reward_sum / self.scored:.3f}")
        remaining = self.total - finished
        if remaining <= 0:
            parts.append(f"elapsed {format_duration(elapsed)}")
        elif rate > 0:
            parts.append(f"ETA {format_duration(remaining / rate)}")
        else:
            parts.append("ETA --")
        extra = self.status() if self.status is not None else ""
        if extra:
            parts.append(extra)
        return " | ".join(parts)

    def _draw(self, *, force: bool = False) -> None:
        now = self.clock()
        if not force and now - self._last_draw < self.interval:
            return
        self._last_draw = now
        if self.tty:
            # \x1b[K clears what a longer previous line left behind.
            self.stream.write("\r" + self.line() + "\x1b[K")
        else:
            self.stream.write(self.line() + "\n")
        self.stream.flush()
        self._drawn = True
