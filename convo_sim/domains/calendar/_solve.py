"""Exact, deterministic scheduling: place every event without overlap, or prove it impossible.

The search works on *candidate starts*: for each event, the slots of a grid
(`step` minutes, anchored at the window's start) that keep it inside the
window and its constraint, plus its `at` time and its current start, which
are honoured even off the grid. "No schedule" means none exists over these
candidates; with `step=1` that is every minute.

Feasibility is decided by sequencing: in any schedule, the movable events
taken in time order can each be moved to their earliest candidate after the
previous one ends, so it suffices to search orders of events, placing each
as early as possible. Orders are pruned by deadlines (an event whose last
candidate is already passed), by interchangeable events (tried in one order
only) and by remembering, per set of placed events, the earliest end that
already failed. Twelve events take milliseconds.

Occupied time is a bitmask over the minutes of the day (bit m set: minute m
is taken), and so are an event's candidate starts (bit s set: it may start
at s): the starts that clear the occupied minutes are a few shifts and `&`s
for all candidates at once, and "the earliest candidate at or after t" is
the lowest bit of a shifted mask. The solver runs once per user request in
every simulated dialogue, which makes it a hot path.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from convo_sim.domains.calendar._model import WORKING_WINDOW, Constraint, ExpectedEvent
from convo_sim.domains.calendar._times import MINUTES_PER_DAY

__all__ = ["EventSpec", "is_solvable", "solve_schedule"]


@dataclass(frozen=True, slots=True)
class EventSpec:
    """An event to schedule.

    Attributes:
        event_id: the event's id.
        duration: minutes, positive.
        constraint: the user's time constraint, if any.
    """

    event_id: str
    duration: int
    constraint: Constraint | None = None


@dataclass(slots=True)  # not frozen: a frozen dataclass is slower to build, and this one is private
class _Task:
    event_id: str
    duration: int
    current: int | None  # the current start, when it is a candidate
    width: int  # (1 << duration) - 1: the event's minutes as a bitmask at start 0
    kept: int  # the minutes it takes at its current start, as a bitmask (0: not keepable)
    low: int  # the allowed starts are low..high
    high: int
    grid: range | None  # the grid slots among them; None: only `low` (an `at` constraint)
    _starts: tuple[int, ...] | None = None
    _start_mask: int = -1

    @property
    def start_mask(self) -> int:
        """The candidate starts as a bitmask (bit s set: the event may start at s)."""
        if self._start_mask < 0:
            grid = self.grid
            if grid is None:
                mask = 1 << self.low if self.low <= self.high else 0
            elif grid:  # 1 + 2**step + 2**(2 * step) + ...: a geometric series, then shifted
                mask = ((1 << len(grid) * grid.step) - 1) // ((1 << grid.step) - 1) << grid.start
            else:
                mask = 0
            if self.current is not None:
                mask |= 1 << self.current  # a candidate, on the grid or off it
            self._start_mask = mask
        return self._start_mask

    def clear_starts(self, busy: int) -> int:
        """The candidate starts at which the event overlaps none of the `busy` minutes."""
        return self.start_mask & ~_blocked(busy, self.duration)

    @property
    def starts(self) -> tuple[int, ...]:
        """The candidate starts, ascending.

        Built on first use: most events keep their start, and are never placed.
        """
        if self._starts is None:
            if self.grid is None:
                self._starts = (self.low,) if self.low <= self.high else ()
            elif self.current is not None and self.current not in self.grid:
                starts = list(self.grid)
                bisect.insort(starts, self.current)  # the current start, off the grid
                self._starts = tuple(starts)
            else:
                self._starts = tuple(self.grid)
        return self._starts

    def at(self, start: int) -> int:
        """The minutes the event takes when it starts at `start`, as a bitmask."""
        return self.width << start


def solve_schedule(
    events: Iterable[EventSpec | ExpectedEvent],
    *,
    window: tuple[int, int] = WORKING_WINDOW,
    current: Mapping[str, int] | None = None,
    step: int = 15,
) -> dict[str, int] | None:
    """Find a start for every event, or `None` if no schedule exists.

    A schedule has no two events overlapping (as half-open intervals, so
    back-to-back is fine), every event inside `window` (and inside its own
    `min_time`..`max_time` for an `ExpectedEvent`) and satisfying its
    constraint.

    Among all schedules, the one returned is chosen in this order of
    preference, which makes it unique and stable:

    1. As many events as possible keep their current start.
    2. Among kept sets of that size, the one keeping the events listed first
       wins (the sets are compared event by event in the order of `events`).
    3. The events that move (or are new) are placed in the order of `events`,
       each at its earliest candidate start that still lets the rest fit.

    Args:
        events: the events, in priority order; ids must be unique.
        window: the working window `(start, end)` in minutes, default 10:00-16:00.
        current: current starts by event id, the positions to keep when
            possible; ids not among `events` are ignored.
        step: the grid of candidate starts in minutes, anchored at `window[0]`.

    Returns:
        The start of every event by id, in the order of `events`, or `None`.

    Raises:
        ValueError: an id repeats, a duration is not positive, the window is
            not within one day, or `step` is not positive.
    """
    tasks = _tasks(events, window, current or {}, step)
    keep = _best_kept(tasks)
    if keep is None:
        return None
    busy = 0
    placed: dict[int, int] = {}
    for i in keep:
        kept = tasks[i]
        assert kept.current is not None
        busy |= kept.kept
        placed[i] = kept.current
    moving = [i for i in range(len(tasks)) if i not in placed]
    for position, index in enumerate(moving):
        task = tasks[index]
        rest = [tasks[i] for i in moving[position + 1 :]]
        clear = task.clear_starts(busy)
        while clear:  # the clear candidates, earliest first
            start = (clear & -clear).bit_length() - 1
            if _feasible(busy | task.at(start), rest):
                busy |= task.at(start)
                placed[index] = start
                break
            clear &= clear - 1
        else:  # pragma: no cover - _best_kept proved a completion exists
            raise AssertionError(f"no start for {task.event_id!r} after feasibility was proved")
    return {task.event_id: placed[i] for i, task in enumerate(tasks)}


def is_solvable(
    events: Iterable[EventSpec | ExpectedEvent],
    *,
    window: tuple[int, int] = WORKING_WINDOW,
    step: int = 15,
) -> bool:
    """Whether `solve_schedule` would find a schedule for `events` (see there)."""
    return _feasible(0, _tasks(events, window, {}, step))


def _tasks(
    events: Iterable[EventSpec | ExpectedEvent],
    window: tuple[int, int],
    current: Mapping[str, int],
    step: int,
) -> list[_Task]:
    opens, closes = window
    if not 0 <= opens < closes <= MINUTES_PER_DAY:
        raise ValueError(f"window must lie within one day, start before end: {window!r}")
    if step < 1:
        raise ValueError(f"step must be a positive number of minutes: {step!r}")
    tasks: list[_Task] = []
    seen: set[str] = set()
    for event in events:
        if event.event_id in seen:
            raise ValueError(f"event id {event.event_id!r} occurs twice")
        seen.add(event.event_id)
        if event.duration <= 0:
            raise ValueError(f"duration must be positive: {event!r}")
        low, high = opens, closes - event.duration
        if isinstance(event, ExpectedEvent):
            low, high = max(low, event.min_time), min(high, event.max_time - event.duration)
        low, high = _constrain(low, high, event.duration, event.constraint)
        grid = None
        if event.constraint is None or event.constraint.kind != "at":
            first = opens + -(-(low - opens) // step) * step  # first grid slot at or after low
            grid = range(first, high + 1, step)
        # The current start is a candidate exactly when it is allowed (an `at`
        # constraint allows one start; any other, every start in low..high).
        now = current.get(event.event_id)
        if now is not None and not low <= now <= high:
            now = None
        width = (1 << event.duration) - 1
        kept = 0 if now is None else width << now
        tasks.append(_Task(event.event_id, event.duration, now, width, kept, low, high, grid))
    return tasks


def _constrain(
    low: int, high: int, duration: int, constraint: Constraint | None
) -> tuple[int, int]:
    """Narrow the range of allowed starts `low..high` by a constraint."""
    if constraint is None:
        return low, high
    if constraint.kind == "before":
        return low, min(high, constraint.time - duration)
    if constraint.kind == "after":
        return max(low, constraint.time), high
    if constraint.kind == "at":
        return max(low, constraint.time), min(high, constraint.time)
    assert constraint.until is not None
    return max(low, constraint.time), min(high, constraint.until - duration)


def _best_kept(tasks: Sequence[_Task]) -> list[int] | None:
    """The indices of the events that keep their current start (preferences 1 and 2).

    Branch and bound over keep/move decisions, keep first: leaves are met in
    decreasing order of preference, so a later leaf must keep strictly more
    events to win. A node is dropped as soon as its kept events cannot be
    completed, treating the undecided ones as free to move (or stay).
    """
    keepable = [i for i, task in enumerate(tasks) if task.kept]
    best: list[int] | None = None
    # The first leaf the search meets keeps, in order, every event that does
    # not clash with those kept before it. If that leaf is feasible, so is
    # every node above it (an undecided event may stay where it is), so it
    # is the first answer: test it alone. Usually it keeps every keepable
    # event (the user changed one thing), and then nothing can beat it.
    greedy: list[int] = []
    busy = 0
    for index in keepable:
        mask = tasks[index].kept
        if not busy & mask:
            greedy.append(index)
            busy |= mask
    if _feasible(busy, [task for i, task in enumerate(tasks) if i not in greedy]):
        if len(greedy) == len(keepable):
            return greedy
        best = greedy

    def search(depth: int, kept: list[int], busy: int) -> None:
        nonlocal best
        if best is not None and len(kept) + len(keepable) - depth <= len(best):
            return
        free = [task for i, task in enumerate(tasks) if i not in kept]
        if not _feasible(busy, free):
            return
        if depth == len(keepable):
            best = list(kept)
            return
        index = keepable[depth]
        mask = tasks[index].kept
        if not busy & mask:
            search(depth + 1, [*kept, index], busy | mask)
        search(depth + 1, kept, busy)

    search(0, [], 0)
    return best


def _blocked(busy: int, duration: int) -> int:
    """Bit s set when an event of `duration` starting at s would overlap the `busy` minutes."""
    # The OR of busy >> k for k < duration, doubling the span each step.
    blocked, span = busy, 1
    while 2 * span <= duration:
        blocked |= blocked >> span
        span *= 2
    if span < duration:
        blocked |= blocked >> (duration - span)
    return blocked


def _feasible(busy: int, tasks: Sequence[_Task]) -> bool:
    """Whether `tasks` can all be placed at candidate starts clear of the `busy` minutes."""
    options: list[tuple[int, int, int]] = []  # (last clear start, duration, clear starts)
    for task in tasks:
        clear = task.clear_starts(busy)
        if not clear:
            return False
        options.append((clear.bit_length() - 1, task.duration, clear))
    if len(options) <= 1:
        return True  # one event with a clear start, or none
    # Earliest deadline first finds a schedule quickly when one exists, and
    # puts interchangeable events next to each other.
    options.sort()
    # Try that order alone first (each event at its earliest clear start
    # after the previous one): it is the search's first path, without the
    # search's bookkeeping, and it usually succeeds.
    frontier = 0
    for _, duration, clear in options:
        later = clear >> frontier
        if not later:
            break
        frontier += (later & -later).bit_length() - 1 + duration
    else:
        return True
    everything = (1 << len(options)) - 1
    failed: dict[int, int] = {}  # placed set -> smallest frontier known to fail

    def search(placed: int, frontier: int) -> bool:
        if placed == everything:
            return True
        if failed.get(placed, MINUTES_PER_DAY + 1) <= frontier:
            return False
        # Deadlines ascend with the index, so the first unplaced event has the
        # earliest: if it is not passed, none is.
        first = (~placed & (placed + 1)).bit_length() - 1
        if options[first][0] >= frontier:
            for i in range(first, len(options)):
                if placed >> i & 1:
                    continue
                if i > first and options[i] == options[i - 1] and not placed >> (i - 1) & 1:
                    continue  # an interchangeable event is tried in one order only
                _, duration, clear = options[i]
                later = clear >> frontier
                if search(placed | 1 << i, frontier + (later & -later).bit_length() - 1 + duration):
                    return True
        failed[placed] = min(failed.get(placed, frontier), frontier)
        return False

    return search(0, 0)  # every start is at or after minute 0
