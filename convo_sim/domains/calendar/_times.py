"""Clock times as minutes since midnight: parsing and formatting.

Two textual forms occur in the calendar domain: the 24-hour `HH:MM` the
assistant prints (`"13:05"`), and the 12-hour text NeMo-Gym uses in
constraints (`"1pm"`, `"11:45am"`). Users write the latter in many ways
(`"11:45 am"`, `"11:45\u202fAM"`, `"noon"`); `parse_time` accepts them all and
rejects anything that is not a real clock time.
"""

from __future__ import annotations

import functools
import re
from typing import Final

from convo_sim._errors import InputError

__all__ = [
    "MINUTES_PER_DAY",
    "CalendarDataError",
    "TimeFormatError",
    "format_12h",
    "format_24h",
    "parse_time",
]

MINUTES_PER_DAY: Final = 24 * 60

# ASCII digits only: a time written in other scripts is far more likely a
# corrupted value than a deliberate one. `\s` covers U+202F and U+00A0,
# which chat models put between the number and "am".
_TIME_24H: Final = re.compile(r"([0-9]{1,2}):([0-9]{2})")
_TIME_12H: Final = re.compile(r"([0-9]{1,2})(?::([0-9]{2}))?\s*([ap])\.?m\.?")
_NAMED: Final = {"noon": 12 * 60, "midday": 12 * 60, "midnight": 0}


class CalendarDataError(InputError, ValueError):
    """Calendar data (a time, a constraint, an expected state) is malformed.

    A `ValueError` too, so that callers parsing values can catch the usual type.

    Attributes:
        value: the offending value.
    """

    def __init__(self, problem: str, *, value: object) -> None:
        self.value = value
        super().__init__(problem)


class TimeFormatError(CalendarDataError):
    """A string is not a clock time this module understands."""

    def __init__(self, value: object) -> None:
        super().__init__(
            f"not a clock time: {value!r}; expected 24-hour 'HH:MM' (e.g. '13:05') "
            "or 12-hour text (e.g. '1pm', '11:45am')",
            value=value,
        )


def parse_time(text: str) -> int:
    """Parse a clock time into minutes since midnight.

    Accepted forms (surrounding whitespace and letter case are ignored):
    24-hour `H:MM`/`HH:MM` from `0:00` to `23:59`, plus `24:00` for the end of
    the day; 12-hour `h`, `h:MM` followed by `am`/`pm` (optionally `a.m.`, and
    optionally separated by any whitespace, including U+202F) with `h` from 1
    to 12; and the words `noon`, `midday`, `midnight`.

    Args:
        text: the time as written.

    Returns:
        Minutes since midnight, from 0 to 1440.

    Raises:
        TimeFormatError: `text` is not one of the accepted forms, or names an
            hour or minute out of range (`"25:00"`, `"13pm"`, `"10:60"`).
    """
    if not isinstance(text, str):
        raise TimeFormatError(text)
    return _parse_time(text)


# Cached: every calendar shown, expected state and constraint re-reads the same
# few dozen clock times. Failures are not cached, so they raise every time.
@functools.lru_cache(maxsize=4096)
def _parse_time(text: str) -> int:
    cleaned = text.strip().lower()
    if cleaned in _NAMED:
        return _NAMED[cleaned]
    if match := _TIME_24H.fullmatch(cleaned):
        hours, minutes = int(match[1]), int(match[2])
        if minutes < 60 and (hours < 24 or (hours == 24 and minutes == 0)):
            return hours * 60 + minutes
        raise TimeFormatError(text)
    if match := _TIME_12H.fullmatch(cleaned):
        hours, minutes = int(match[1]), int(match[2] or 0)
        if 1 <= hours <= 12 and minutes < 60:
            afternoon = 12 * 60 if match[3] == "p" else 0
            return (hours % 12) * 60 + minutes + afternoon
    raise TimeFormatError(text)


def format_24h(minutes: int) -> str:
    """Format minutes since midnight as 24-hour `HH:MM` (`"09:05"`, `"24:00"`).

    Raises:
        ValueError: `minutes` is outside 0..1440.
    """
    if not 0 <= minutes <= MINUTES_PER_DAY:
        raise ValueError(f"minutes since midnight out of range 0..1440: {minutes!r}")
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def format_12h(minutes: int) -> str:
    """Format minutes since midnight as NeMo-Gym's 12-hour text.

    Whole hours have no minutes (`"1pm"`), others do (`"11:45am"`); noon is
    `"12pm"` and midnight `"12am"`.

    Raises:
        ValueError: `minutes` is outside 0..1439 (12-hour text has no end of day).
    """
    if not 0 <= minutes < MINUTES_PER_DAY:
        raise ValueError(f"minutes since midnight out of range 0..1439: {minutes!r}")
    hours, mins = divmod(minutes, 60)
    suffix = "am" if hours < 12 else "pm"
    shown = hours % 12 or 12
    return f"{shown}{suffix}" if mins == 0 else f"{shown}:{mins:02d}{suffix}"
