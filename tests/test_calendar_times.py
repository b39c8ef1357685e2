"""Clock times and constraint text: parsing, formatting, round trips."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from convo_sim._errors import InputError
from convo_sim.domains.calendar import (
    CalendarDataError,
    Constraint,
    ConstraintFormatError,
    TimeFormatError,
    format_12h,
    format_24h,
    parse_constraint,
    parse_time,
)

minutes_of_day = st.integers(min_value=0, max_value=24 * 60 - 1)


@pytest.mark.parametrize(
    ("text", "minutes"),
    [
        ("10:00", 600),
        ("9:05", 545),
        ("09:05", 545),
        ("00:00", 0),
        ("23:59", 1439),
        ("24:00", 1440),
        (" 13:30 ", 810),
        ("1pm", 780),
        ("1 pm", 780),
        ("11:45am", 705),
        ("11:45 am", 705),
        ("11:45\u202fam", 705),
        ("11:45\u00a0am", 705),
        ("11:45AM", 705),
        ("11:45 PM", 23 * 60 + 45),
        ("11:45 p.m.", 23 * 60 + 45),
        ("12am", 0),
        ("12:15am", 15),
        ("12pm", 720),
        ("12:30pm", 750),
        ("noon", 720),
        ("Noon", 720),
        ("midnight", 0),
    ],
)
def test_parse_time_reads_24_hour_and_12_hour_text(text: str, minutes: int) -> None:
    assert parse_time(text) == minutes


@pytest.mark.parametrize(
    "text",
    [
        "",
        "10",
        "ten",
        "25:00",
        "24:01",
        "10:60",
        "10:5",
        "13pm",
        "0am",
        "0:30am",
        "10:00:00",
        "10.00",
        "1_0:00",
        "\uff11\uff10:00",  # full-width digits: int() would take them, we do not
        "10:00 xm",
        "-1:00",
    ],
)
def test_parse_time_rejects_what_is_not_a_clock_time(text: str) -> None:
    with pytest.raises(TimeFormatError) as caught:
        parse_time(text)
    assert caught.value.value == text


def test_time_errors_belong_to_the_error_tree() -> None:
    with pytest.raises(TimeFormatError) as caught:
        parse_time("25:00")
    assert isinstance(caught.value, CalendarDataError)
    assert isinstance(caught.value, InputError)
    assert isinstance(caught.value, ValueError)


def test_parse_time_rejects_non_strings() -> None:
    with pytest.raises(TimeFormatError):
        parse_time(600)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("minutes", "text"),
    [(600, "10am"), (705, "11:45am"), (720, "12pm"), (765, "12:45pm"), (960, "4pm"), (0, "12am")],
)
def test_format_12h_uses_nemo_wording(minutes: int, text: str) -> None:
    assert format_12h(minutes) == text


@pytest.mark.parametrize(("minutes", "text"), [(545, "09:05"), (0, "00:00"), (1440, "24:00")])
def test_format_24h_pads(minutes: int, text: str) -> None:
    assert format_24h(minutes) == text


@pytest.mark.parametrize(("formatter", "minutes"), [(format_12h, 1440), (format_24h, 1441)])
def test_formatting_rejects_out_of_range(formatter: object, minutes: int) -> None:
    with pytest.raises(ValueError):
        formatter(minutes)  # type: ignore[operator]
    with pytest.raises(ValueError):
        formatter(-1)  # type: ignore[operator]


@given(minutes_of_day)
def test_both_formats_round_trip(minutes: int) -> None:
    assert parse_time(format_24h(minutes)) == minutes
    text = format_12h(minutes)
    assert parse_time(text) == minutes
    assert parse_time(text.upper()) == minutes
    assert parse_time(text.replace("am", "\u202fam").replace("pm", " pm")) == minutes


@given(minutes_of_day)
def test_format_12h_matches_the_24_hour_reading(minutes: int) -> None:
    # Independent check of the 12-hour wording against the 24-hour clock.
    text = format_12h(minutes)
    hours = minutes // 60
    assert text.endswith("am" if hours < 12 else "pm")
    shown = int(text[:-2].split(":")[0])
    assert shown == (hours % 12 or 12)
    assert (":" in text) == (minutes % 60 != 0)


@pytest.mark.parametrize(
    ("text", "constraint"),
    [
        ("before 11am", Constraint("before", 660)),
        ("after 2:15pm", Constraint("after", 855)),
        ("at 1pm", Constraint("at", 780)),
        ("between 10am and 11:45am", Constraint("between", 600, 705)),
        ("Between 10:00\u202fAM and 11:45\u202fAM", Constraint("between", 600, 705)),
        ("  before   13:00 ", Constraint("before", 780)),
    ],
)
def test_parse_constraint(text: str, constraint: Constraint) -> None:
    assert parse_constraint(text) == constraint


def test_no_constraint_is_none() -> None:
    assert parse_constraint(None) is None


@pytest.mark.parametrize(
    "text",
    ["", "soon", "before", "before 25:00", "between 10am", "between 2pm and 1pm", "around 1pm"],
)
def test_parse_constraint_rejects_other_text(text: str) -> None:
    with pytest.raises(ConstraintFormatError) as caught:
        parse_constraint(text)
    assert caught.value.value == text


@given(
    st.sampled_from(["before", "after", "at", "between"]),
    minutes_of_day,
    minutes_of_day,
)
def test_constraint_text_round_trips(kind: str, first: int, second: int) -> None:
    low, high = sorted((first, second))
    constraint = (
        Constraint("between", low, high) if kind == "between" else Constraint(kind, first)  # type: ignore[arg-type]
    )
    assert parse_constraint(constraint.text) == constraint
    assert str(constraint) == constraint.text


@pytest.mark.parametrize(
    ("constraint", "start", "duration", "allowed"),
    [
        # before T: ends at or before T
        (Constraint("before", 660), 600, 60, True),
        (Constraint("before", 660), 601, 60, False),
        # after T: starts at or after T
        (Constraint("after", 840), 840, 30, True),
        (Constraint("after", 840), 839, 30, False),
        # between T and U: starts at or after T, ends at or before U
        (Constraint("between", 600, 705), 600, 60, True),
        (Constraint("between", 600, 705), 645, 60, True),
        (Constraint("between", 600, 705), 646, 60, False),
        (Constraint("between", 600, 705), 599, 60, False),
        # at T: starts exactly at T
        (Constraint("at", 780), 780, 30, True),
        (Constraint("at", 780), 781, 30, False),
        (Constraint("at", 780), 779, 30, False),
    ],
)
def test_constraint_semantics_at_and_past_each_boundary(
    constraint: Constraint, start: int, duration: int, allowed: bool
) -> None:
    assert constraint.allows(start, duration) is allowed


@pytest.mark.parametrize(
    "arguments",
    [("between", 600), ("before", 600, 700), ("between", 700, 600), ("around", 600)],
)
def test_constraint_rejects_inconsistent_fields(arguments: tuple[object, ...]) -> None:
    with pytest.raises(ValueError):
        Constraint(*arguments)  # type: ignore[arg-type]
