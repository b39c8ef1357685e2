"""The exact scheduler: validity, optimality of the documented preference order, proofs of None."""

from __future__ import annotations

import itertools
import random
from collections.abc import Mapping, Sequence

import pytest

from convo_sim.domains.calendar import (
    Constraint,
    EventSpec,
    ExpectedEvent,
    ExpectedState,
    is_solvable,
    parse_time,
    solve_schedule,
)


def t(text: str) -> int:
    return parse_time(text)


def assert_valid(
    events: Sequence[EventSpec], schedule: Mapping[str, int], window: tuple[int, int]
) -> None:
    assert list(schedule) == [event.event_id for event in events]
    spans = []
    for event in events:
        start = schedule[event.event_id]
        assert window[0] <= start and start + event.duration <= window[1], event
        if event.constraint is not None:
            assert event.constraint.allows(start, event.duration), (event, start)
        spans.append((start, start + event.duration))
    for (a_start, a_end), (b_start, b_end) in itertools.combinations(spans, 2):
        assert a_end <= b_start or b_end <= a_start, (spans, schedule)


def test_new_events_fill_the_day_from_the_start() -> None:
    events = [EventSpec(str(i), 60) for i in range(6)]
    assert solve_schedule(events) == {str(i): t("10:00") + 60 * i for i in range(6)}
    assert solve_schedule([*events, EventSpec("6", 15)]) is None


def test_back_to_back_is_allowed() -> None:
    events = [EventSpec("a", 180), EventSpec("b", 180)]
    assert solve_schedule(events) == {"a": 600, "b": 780}


def test_valid_current_starts_are_kept_even_off_the_grid() -> None:
    current = {"a": t("13:05"), "b": t("10:00")}
    events = [EventSpec("a", 45), EventSpec("b", 30), EventSpec("c", 60)]
    assert solve_schedule(events, current=current) == {"a": 785, "b": 600, "c": 630}


def test_an_event_whose_current_start_breaks_its_constraint_moves_to_the_earliest_slot() -> None:
    events = [
        EventSpec("a", 60),
        EventSpec("b", 60, Constraint("after", t("2pm"))),
        EventSpec("c", 30),
    ]
    current = {"a": t("10:00"), "b": t("11:00"), "c": t("14:00")}
    # b must start at or after 14:00; c keeps 14:00-14:30, so b goes to 14:30.
    assert solve_schedule(events, current=current) == {"a": 600, "b": 870, "c": 840}


def test_at_constraints_are_honoured_off_the_grid() -> None:
    events = [EventSpec("x", 30, Constraint("at", t("10:05"))), EventSpec("y", 30)]
    assert solve_schedule(events) == {"x": 605, "y": 645}


def test_a_fixed_event_displaces_the_one_in_its_way() -> None:
    events = [EventSpec("a", 60), EventSpec("b", 30, Constraint("at", t("10:30")))]
    assert solve_schedule(events, current={"a": 600}) == {"a": 660, "b": 630}


def test_keeping_more_events_beats_keeping_the_first_listed() -> None:
    # D must end by 12:00. Keeping A (11:00-12:00) forces B and C out of
    # 10:00-11:00; moving A keeps both B and C.
    events = [
        EventSpec("A", 60),
        EventSpec("B", 30),
        EventSpec("C", 30),
        EventSpec("D", 60, Constraint("before", t("12pm"))),
    ]
    current = {"A": t("11:00"), "B": t("10:00"), "C": t("10:30")}
    schedule = solve_schedule(events, window=(600, 780), current=current)
    assert schedule == {"A": 720, "B": 600, "C": 630, "D": 660}


@pytest.mark.parametrize(("order", "mover"), [("ABD", "B"), ("BAD", "A")])
def test_between_equal_keeps_the_first_listed_event_keeps_its_place(order: str, mover: str) -> None:
    specs = {
        "A": EventSpec("A", 30),
        "B": EventSpec("B", 30),
        "D": EventSpec("D", 30, Constraint("between", t("10am"), t("11am"))),
    }
    current = {"A": t("10:00"), "B": t("10:30")}
    schedule = solve_schedule([specs[c] for c in order], window=(600, 720), current=current)
    assert schedule is not None
    kept = {name for name, start in current.items() if schedule[name] == start}
    assert kept == set("AB") - {mover}
    assert schedule[mover] == t("11:00")  # the earliest slot that leaves D a place


def test_ids_in_current_that_are_not_events_are_ignored() -> None:
    assert solve_schedule([EventSpec("a", 30)], current={"zzz": 600}) == {"a": 600}


def test_none_is_relative_to_the_grid_and_step_1_is_exact() -> None:
    events = [EventSpec("x", 30, Constraint("at", t("10:05"))), EventSpec("y", 25)]
    window = (t("10:00"), t("11:00"))
    assert solve_schedule(events, window=window) is None
    assert not is_solvable(events, window=window)
    assert solve_schedule(events, window=window, step=1) == {"x": 605, "y": 635}
    assert is_solvable(events, window=window, step=1)


@pytest.mark.parametrize(
    "events",
    [
        [EventSpec("a", 30, Constraint("at", t("9am")))],
        [EventSpec("a", 30, Constraint("before", t("10:15")))],
        [EventSpec("a", 60, Constraint("between", t("10am"), t("10:45am")))],
        [
            EventSpec("a", 30, Constraint("at", t("1pm"))),
            EventSpec("b", 30, Constraint("at", t("1:15pm"))),
        ],
        [EventSpec("a", 90, Constraint("after", t("3pm")))],
        [EventSpec(str(i), 45, Constraint("before", t("noon"))) for i in range(3)],
    ],
)
def test_impossible_calendars_give_none(events: list[EventSpec]) -> None:
    assert solve_schedule(events) is None
    assert not is_solvable(events)


def test_expected_events_use_their_own_window() -> None:
    state = ExpectedState([ExpectedEvent("0", 60, None, min_time=t("13:00"), max_time=t("15:00"))])
    assert solve_schedule(state.values()) == {"0": t("13:00")}
    assert solve_schedule(state.values(), window=(600, 780)) is None


@pytest.mark.parametrize(
    ("events", "keywords"),
    [
        ([EventSpec("a", 30), EventSpec("a", 15)], {}),
        ([EventSpec("a", 0)], {}),
        ([EventSpec("a", 30)], {"window": (900, 600)}),
        ([EventSpec("a", 30)], {"window": (0, 1441)}),
        ([EventSpec("a", 30)], {"step": 0}),
    ],
)
def test_bad_arguments_raise(events: list[EventSpec], keywords: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        solve_schedule(events, **keywords)  # type: ignore[arg-type]


# --- Against brute force ------------------------------------------------------------


def candidate_starts(
    event: EventSpec, window: tuple[int, int], step: int, current: int | None
) -> list[int]:
    """Every start the docs promise to consider, found by testing each minute."""
    return [
        start
        for start in range(window[0], window[1])
        if ((start - window[0]) % step == 0 or start == current or _at(event) == start)
        and start + event.duration <= window[1]
        and (event.constraint is None or event.constraint.allows(start, event.duration))
    ]


def _at(event: EventSpec) -> int | None:
    return event.constraint.time if event.constraint and event.constraint.kind == "at" else None


def brute_force(
    events: Sequence[EventSpec], window: tuple[int, int], step: int, current: Mapping[str, int]
) -> dict[str, int] | None:
    """The best schedule by the documented preference order, by trying every assignment."""
    options = [candidate_starts(e, window, step, current.get(e.event_id)) for e in events]
    best: tuple[object, ...] | None = None
    chosen = None
    for starts in itertools.product(*options):
        spans = sorted((s, s + e.duration) for s, e in zip(starts, events, strict=True))
        if any(spans[i][1] > spans[i + 1][0] for i in range(len(spans) - 1)):
            continue
        kept = [current.get(e.event_id) == s for s, e in zip(starts, events, strict=True)]
        moved_starts = tuple(s for s, k in zip(starts, kept, strict=True) if not k)
        key = (-sum(kept), tuple(not k for k in kept), moved_starts)
        if best is None or key < best:
            best, chosen = key, starts
    if chosen is None:
        return None
    return {e.event_id: s for e, s in zip(events, chosen, strict=True)}


def random_instance(
    rng: random.Random,
    count: int,
    window: tuple[int, int],
    durations: Sequence[int] = (15, 20, 30, 45, 60, 90),
) -> tuple[list[EventSpec], dict[str, int]]:
    events = []
    for i in range(count):
        duration = rng.choice(durations)
        kind = rng.choice([None, None, "before", "after", "between", "at"])
        point = rng.randrange(window[0], window[1], rng.choice([5, 15]))
        constraint = None
        if kind == "between":
            other = rng.randrange(window[0], window[1] + 1, 15)
            constraint = Constraint("between", min(point, other), max(point, other))
        elif kind is not None:
            constraint = Constraint(kind, point)  # type: ignore[arg-type]
        events.append(EventSpec(str(i), duration, constraint))
    current = {
        e.event_id: rng.randrange(window[0], window[1], rng.choice([5, 15]))
        for e in events
        if rng.random() < 0.6
    }
    return events, current


@pytest.mark.parametrize("seed", range(8))
def test_matches_brute_force_on_small_calendars(seed: int) -> None:
    rng = random.Random(seed)
    window = (t("10:00"), t("12:30"))
    outcomes = {"solved": 0, "none": 0}
    for _ in range(60):
        events, current = random_instance(rng, rng.randint(1, 4), window)
        expected = brute_force(events, window, 15, current)
        got = solve_schedule(events, window=window, current=current)
        assert got == expected, (events, current)
        assert is_solvable(events, window=window) is (expected is not None)
        if got is not None:
            assert_valid(events, got, window)
        outcomes["solved" if got is not None else "none"] += 1
    assert min(outcomes.values()) > 0, outcomes  # both outcomes were exercised


@pytest.mark.parametrize("seed", range(4))
def test_twelve_events_are_solved_validly_and_stably(seed: int) -> None:
    rng = random.Random(100 + seed)
    window = (t("10:00"), t("16:00"))
    solved = 0
    for _ in range(40):
        events, current = random_instance(rng, 12, window, durations=(15, 20, 30, 45))
        schedule = solve_schedule(events, window=window, current=current)
        if schedule is None:
            assert not is_solvable(events, window=window)
            continue
        solved += 1
        assert_valid(events, schedule, window)
        # A valid calendar is left exactly as it is.
        assert solve_schedule(events, window=window, current=schedule) == schedule
        # A new event that fits in a free slot moves nobody, and takes the first one.
        free = [
            start
            for start in range(window[0], window[1] - 15 + 1, 15)
            if all(
                start + 15 <= s or start >= s + e.duration
                for e, s in zip(events, schedule.values(), strict=True)
            )
        ]
        grown = solve_schedule([*events, EventSpec("new", 15)], window=window, current=schedule)
        if free:
            assert grown == {**schedule, "new": free[0]}
        else:
            assert grown is None or any(grown[k] != v for k, v in schedule.items())
    assert solved > 5


def test_symmetric_infeasible_calendars_are_proved_quickly() -> None:
    # Fixed ten-minute events every hour leave 50-minute gaps; eight 35-minute
    # events need eight gaps but there are only six. Without symmetry pruning
    # this would try 8! orders per gap assignment.
    fixed = [EventSpec(f"f{i}", 10, Constraint("at", t("10:50") + 60 * i)) for i in range(5)]
    movable = [EventSpec(str(i), 35) for i in range(8)]
    assert solve_schedule(fixed + movable, step=1) is None
    assert solve_schedule(fixed + movable[:6], step=1) is not None
