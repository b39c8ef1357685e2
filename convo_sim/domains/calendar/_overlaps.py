"""Which events of a calendar overlap another, in O(n log n).

The grader, the turn verifiers and the simulated user all ask which listed
events overlap; comparing every pair made an 8,000-event reply take seconds
(issue 11). Here each event asks one question of a sorted list instead:
among the events that start before it ends, does any end after it starts?

Two events overlap when each starts before the other ends (half-open
intervals: back to back is fine). The comparison is written as the
reference writes it, `not (end <= other_start or start >= other_end)`, so a
NaN end (a NaN duration in a reply) compares as +inf. Events with the same
times overlap each other when their span is not empty and they count as
different events (`distinct`): the grader, like the reference, never
compares two equal entries.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Sequence
from typing import Any, TypeAlias

__all__ = ["Span", "overlapping", "overlaps", "partner"]

Span: TypeAlias = tuple[Any, Any]
"""`(start, end)`: numbers that compare with each other (ints, floats, NaN)."""


def overlaps(span: Span, other: Span) -> bool:
    """Whether two events overlap, exactly as the reference decides it."""
    return not (span[1] <= other[0] or span[0] >= other[1])


def overlapping(
    spans: Sequence[Span], *, distinct: Callable[[int, int], bool] | None = None
) -> list[int]:
    """The positions of the events that overlap at least one other, in increasing order.

    Args:
        spans: each event's `(start, end)`.
        distinct: whether the events at two positions with the same times
            are different events (default: always). It must be an
            equivalence's negation (the grader's `!=` between JSON objects
            without NaN is one), so one comparison per event decides a group.
    """
    if _apart(spans):
        return []
    # NaN never equals itself, so `end != end` finds it; as the reference's
    # comparison reads it, it is an end later than everything.
    keyed = [(start, math.inf if end != end else end) for start, end in spans]
    groups: dict[Span, list[int]] = {}
    for position, span in enumerate(keyed):
        groups.setdefault(span, []).append(position)
    points = sorted(groups)
    starts = [start for start, _ in points]
    # best[k]: the largest end among points[:k + 1], the index of its point,
    # and the largest end among the other points of that prefix.
    best: list[tuple[Any, int, Any]] = []
    top: tuple[Any, int, Any] = (-math.inf, -1, -math.inf)
    for index, (_, end) in enumerate(points):
        if end > top[0]:
            top = (end, index, top[0])
        elif end > top[2]:
            top = (top[0], top[1], end)
        best.append(top)
    found: list[int] = []
    for index, point in enumerate(points):
        members = groups[point]
        start, end = point
        if (
            end > start
            and len(members) > 1
            and (distinct is None or any(distinct(members[0], m) for m in members[1:]))
        ):
            found.extend(members)  # different events at the same non-empty times
            continue
        before = bisect.bisect_left(starts, end)  # points that start before this one ends
        if before == 0:
            continue
        largest, owner, second = best[before - 1]
        if (largest if owner != index else second) > start:
            found.extend(members)
    found.sort()
    return found


def _apart(spans: Sequence[Span]) -> bool:
    """True when no two events overlap, checked with one sort (the usual calendar).

    In start order, an event overlaps an earlier one exactly when it starts
    before the latest end so far. False means "maybe" (an overlap, an empty
    or reversed span, a NaN); `overlapping` then decides exactly.
    """
    latest = -math.inf
    for start, end in sorted(spans):
        if not start < end or start < latest:  # also catches a NaN end
            return False
        latest = end
    return True


def partner(
    spans: Sequence[Span], position: int, *, distinct: Callable[[int, int], bool] | None = None
) -> int | None:
    """The first event (in list order) that overlaps the one at `position`, or None."""
    span = spans[position]
    for other, other_span in enumerate(spans):
        if other == position:
            continue
        if overlaps(span, other_span) and (distinct is None or distinct(position, other)):
            return other
    return None
