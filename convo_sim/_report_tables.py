"""JSON lists of records inside a message, shown as tables in the HTML report.

The calendar assistant shows the whole calendar in every reply as a JSON
list of events; on one line it is hard to read. Any JSON list of flat
objects found in a message's text (a calendar, search results, rows of a
tool's output) is shown under it as a table, one row per object, columns
in first-seen order. Every value is escaped; nothing in the text becomes
markup.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from html import escape

__all__ = ["json_tables"]

_MOST_TABLES = 3
_MOST_ROWS = 200
_MOST_TEXT = 100_000
"""Texts longer than this are not searched (a pathological reply stays cheap)."""


def json_tables(text: str) -> str:
    """HTML tables for the JSON lists of flat objects in `text` ("" when there is none)."""
    if "[" not in text or "{" not in text or len(text) > _MOST_TEXT:
        return ""
    return "".join(_table(rows) for rows in _lists(text))


def _lists(text: str) -> Iterator[list[dict[str, object]]]:
    """The JSON lists of flat objects in `text`, left to right, at most a few."""
    decoder = json.JSONDecoder()
    found = 0
    start = text.find("[")
    while start != -1 and found < _MOST_TABLES:
        try:
            value, end = decoder.raw_decode(text, start)
        except ValueError:
            start = text.find("[", start + 1)
            continue
        if _records(value):
            found += 1
            yield value
        start = text.find("[", max(end, start + 1))


def _records(value: object) -> bool:
    return (
        isinstance(value, list)
        and 0 < len(value) <= _MOST_ROWS
        and all(
            isinstance(row, dict)
            and row
            and all(isinstance(v, str | int | float | bool) or v is None for v in row.values())
            for row in value
        )
    )


def _table(rows: list[dict[str, object]]) -> str:
    columns: list[str] = []
    for row in rows:
        columns.extend(key for key in row if key not in columns)
    head = "".join(f"<th>{escape(str(c))}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(_cell(row.get(c)))}</td>" for c in columns) + "</tr>"
        for row in rows
    )
    return f'<table class="grid records"><tr>{head}</tr>{body}</table>'


def _cell(value: object) -> str:
    if value is None:
        return ""
    return json.dumps(value) if isinstance(value, bool) else str(value)
