"""Scenario files to records: JSONL, a JSON array or YAML, each record with its line.

Reading is bounded (see `convo_sim.scenarios._bounds`): a file that is too
large, not a regular file, nested too deeply, holds an over-long integer or
a YAML alias bomb is a `ScenarioError` naming the line at fault before any
record is built.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from convo_sim._errors import ScenarioError
from convo_sim.scenarios import _bounds as bounds
from convo_sim.scenarios._bounds import OutOfBounds

__all__ = ["Record", "line_of", "read_records"]

FieldPath = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Record:
    """One record of a file: its data, its 1-based line, and its YAML node (for field lines)."""

    data: Any
    line: int
    node: Any = None


def read_records(path: Path) -> list[Record]:
    """Every record of the file, by its suffix: YAML for `.yaml`/`.yml`, else JSON.

    Raises:
        ScenarioError: the file cannot be read, breaks a bound or does not parse.
    """
    text = _read(path)
    if path.suffix.lower() in (".yaml", ".yml"):
        return _yaml_records(text, path)
    return _json_records(text, path)


def _read(path: Path) -> str:
    try:
        data = bounds.read_bounded(path, bounds.MAX_FILE_BYTES)
    except FileNotFoundError:
        raise ScenarioError("no such file", path=path) from None
    except OutOfBounds as exc:
        raise ScenarioError(exc.problem, path=path, line=exc.line) from None
    except OSError as exc:
        raise ScenarioError(
            f"cannot read the file: {exc.strerror or exc}", path=path, line=1
        ) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ScenarioError("not UTF-8 text", path=path, line=line) from None


def _json_value(text: str, path: Path, line: int) -> Any:
    """One JSON value within the bounds; errors name `line` plus the lines into `text`."""
    try:
        return bounds.json_loads(text)
    except OutOfBounds as exc:
        raise ScenarioError(exc.problem, path=path, line=line + exc.line_in(text) - 1) from None
    except json.JSONDecodeError as exc:
        raise ScenarioError(
            f"not valid JSON: {exc.msg} (column {exc.colno}); expected one JSON object per line",
            path=path,
            line=line + exc.lineno - 1,
        ) from None


def _json_records(text: str, path: Path) -> list[Record]:
    if text.lstrip().startswith("["):
        return _json_array_records(text, path)
    records: list[Record] = []
    # Split on newlines only: JSON strings may hold U+2028 and the other
    # characters `str.splitlines` would also split at.
    for number, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            records.append(Record(_json_value(line, path, number), number))
    return records


def _json_array_records(text: str, path: Path) -> list[Record]:
    try:
        items = bounds.json_loads(text)
    except OutOfBounds as exc:
        raise ScenarioError(exc.problem, path=path, line=exc.line_in(text)) from None
    except json.JSONDecodeError as exc:
        raise ScenarioError(f"not valid JSON: {exc.msg}", path=path, line=exc.lineno) from None
    if not isinstance(items, list):  # `[1] [2]`-like text fails above; this is defensive
        raise ScenarioError("expected a JSON array of scenarios", path=path, line=1)
    # Recover each element's line by decoding the array element by element.
    records: list[Record] = []
    position = text.index("[") + 1
    for item in items:
        while text[position] in " \t\r\n,":
            position += 1
        _, end = bounds.DECODER.raw_decode(text, position)
        records.append(Record(item, text.count("\n", 0, position) + 1))
        position = end
    return records


def _yaml() -> Any:
    try:
        return importlib.import_module("yaml")
    except ImportError:
        raise ScenarioError(
            "reading YAML needs PyYAML; install it with: pip install 'convo-sim[yaml]'"
        ) from None


def _yaml_records(text: str, path: Path) -> list[Record]:
    yaml = _yaml()
    try:
        bounds.check_yaml_events(yaml, text)  # before the recursive composer runs
        loader = yaml.SafeLoader(text)
        try:
            root = loader.get_single_node()
            bounds.check_yaml_tree(yaml, root)
            data = loader.construct_document(root) if root is not None else None
        finally:
            loader.dispose()
    except OutOfBounds as exc:
        raise ScenarioError(exc.problem, path=path, line=exc.line) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        problem = " ".join(str(exc.problem or exc).split())
        raise ScenarioError(f"not valid YAML: {problem}", path=path, line=line) from None
    except yaml.YAMLError as exc:
        position = getattr(exc, "position", None)  # a ReaderError: a character YAML forbids
        if isinstance(position, int):
            line = text.count("\n", 0, position) + 1
            problem = f"character {text[position : position + 1]!r} is not allowed in YAML"
        else:
            line, problem = 1, " ".join(str(exc).split())
        raise ScenarioError(f"not valid YAML: {problem}", path=path, line=line) from None
    except (ValueError, TypeError, OverflowError) as exc:
        # A scalar whose explicit tag does not fit its text (`!!int x`).
        problem = " ".join(str(exc).split())
        raise ScenarioError(f"not valid YAML: {problem}", path=path, line=1) from None
    if data is None:
        return []
    if isinstance(data, Mapping) and "scenarios" in data:
        root = _yaml_child(root, "scenarios")
        data = data["scenarios"]
    elif isinstance(data, Mapping):
        return [Record(data, root.start_mark.line + 1, root)]
    if (
        not isinstance(data, list)
        or root is None
        or not isinstance(getattr(root, "value", None), list)
    ):
        raise ScenarioError(
            "expected a YAML list of scenarios, or a mapping with a 'scenarios' list",
            path=path,
            line=1 if root is None else root.start_mark.line + 1,
        )
    return [
        Record(item, node.start_mark.line + 1, node)
        for item, node in zip(data, root.value, strict=True)
    ]


def _yaml_child(node: Any, key: str | int) -> Any:
    """The YAML node under `key` of a mapping node, or item `key` of a sequence node."""
    value = getattr(node, "value", None)
    if not isinstance(value, list):
        return None
    if isinstance(key, int):
        return value[key] if 0 <= key < len(value) and not isinstance(value[key], tuple) else None
    for pair in value:
        if isinstance(pair, tuple) and getattr(pair[0], "value", None) == key:
            return pair[1]
    return None


def line_of(record: Record, at: FieldPath) -> int:
    """The line of the field at `at` (YAML), else the record's line."""
    node, line = record.node, record.line
    for key in at:
        node = _yaml_child(node, key) if node is not None else None
        if node is None:
            break
        line = node.start_mark.line + 1
    return line
