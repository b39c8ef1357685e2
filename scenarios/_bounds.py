"""Bounds on what a scenario file may make the loader do, checked before it does it.

A scenario file is input from anyone: it must not be able to hang the
loader, exhaust its memory or its stack, or slip a value past it that
breaks a run later. Each check names the 1-based line at fault:

* the file: a regular file (not a FIFO, which would block, nor a device such
  as `/dev/zero`, which never ends), at most `MAX_FILE_BYTES`;
* nesting: at most `MAX_DEPTH` levels of lists and objects (Python's
  parsers recurse, and deep input ends in `RecursionError`);
* numbers: integers of at most `MAX_INT_DIGITS` digits (CPython refuses
  over 4,300, and converting long ones is quadratic);
* YAML aliases: none that refers to a node containing it, and at most
  `MAX_ALIAS_NODES` nodes added by expanding them (a 1 KB "billion
  laughs" file expands to 10^7 elements); mapping keys must be strings, as
  in JSON, and not repeated;
* text: no lone surrogate (the JSON escape `"\\udc80"` decodes to one),
  which no UTF-8 output can hold.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "MAX_ALIAS_NODES",
    "MAX_DEPTH",
    "MAX_FILE_BYTES",
    "MAX_INT_DIGITS",
    "OutOfBounds",
    "check_yaml_events",
    "check_yaml_tree",
    "first_bad_text",
    "json_loads",
    "read_bounded",
]

MAX_FILE_BYTES = 256 * 2**20
"""The largest scenario file read (256 MiB)."""
MAX_DEPTH = 100
"""The deepest nesting of lists and objects (NeMo-Gym rows with tool schemas reach ~15)."""
MAX_INT_DIGITS = 20
"""The most digits of an integer (a 64-bit seed has 19 or 20)."""
MAX_ALIAS_NODES = 100_000
"""The most YAML nodes that expanding aliases may add to a file."""

_YAML_STR = "tag:yaml.org,2002:str"
_YAML_INT = "tag:yaml.org,2002:int"
_YAML_MERGE = "tag:yaml.org,2002:merge"


class OutOfBounds(Exception):
    """The input breaks a bound; `line` is 1-based, or found from `offset` by the caller."""

    def __init__(self, problem: str, *, line: int | None = None, offset: int = 0) -> None:
        self.problem = problem
        self.line = line
        self.offset = offset
        super().__init__(problem)

    def line_in(self, text: str) -> int:
        """The line of the problem in `text` (the whole input it was found in)."""
        return self.line if self.line is not None else text.count("\n", 0, self.offset) + 1


def read_bounded(path: Path, limit: int) -> bytes:
    """The bytes of a regular file of at most `limit` bytes.

    Raises:
        FileNotFoundError: there is no such file.
        OSError: the file cannot be opened or read.
        OutOfBounds: not a regular file, or larger than `limit`.
    """
    # Non-blocking, so that opening a FIFO with no writer returns at once
    # (and is then refused) instead of waiting for one.
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OutOfBounds(
                "not a regular file (a folder, FIFO or device); expected a scenario file", line=1
            )
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise OutOfBounds(
            f"the file is larger than {limit} bytes, the most a scenario file may hold",
            line=data.count(b"\n", 0, limit) + 1,
        )
    return data


# A JSON string (escapes included), or one bracket: strings are skipped
# whole, so brackets inside them do not count.
_JSON_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)


def _too_deep(text: str) -> int | None:
    """The offset where `text` nests deeper than `MAX_DEPTH`, or None."""
    depth = 0
    for match in _JSON_TOKENS.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return match.start()
        elif token in "]}":
            depth -= 1
    return None


class _LongInteger(ValueError):
    def __init__(self, digits: str) -> None:
        self.digits = digits
        super().__init__(digits)


def _bounded_int(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_INT_DIGITS:
        raise _LongInteger(digits)
    return int(digits)


DECODER = json.JSONDecoder(parse_int=_bounded_int)
"""A JSON decoder that refuses integers longer than `MAX_INT_DIGITS` digits."""


def json_loads(text: str) -> Any:
    """`json.loads` within the bounds on nesting and integers.

    Raises:
        json.JSONDecodeError: `text` is not JSON.
        OutOfBounds: nested too deeply, or an integer is too long (`offset` set).
    """
    offset = _too_deep(text)
    if offset is not None:
        raise OutOfBounds(
            f"nested deeper than {MAX_DEPTH} levels of lists and objects", offset=offset
        )
    try:
        return DECODER.decode(text)
    except _LongInteger as exc:
        raise OutOfBounds(
            f"an integer of {len(exc.digits.lstrip('-'))} digits; at most {MAX_INT_DIGITS} are read",
            offset=max(text.find(exc.digits), 0),
        ) from None
    except RecursionError:  # pragma: no cover - the depth check comes first
        raise OutOfBounds("nested too deeply", offset=0) from None


def check_yaml_events(yaml: Any, text: str) -> None:
    """Walk the YAML events of `text` once, before anything is built from them.

    Checks nesting depth (the composer recurses), recursive aliases and how
    many nodes expanding the aliases adds.

    Raises:
        OutOfBounds: a bound is broken (`line` set).
        yaml.YAMLError: the text is not YAML.
    """
    depth = 0
    expanded = 0
    sizes: dict[str, int] = {}  # anchor -> nodes under it, once it is complete
    building: set[str] = set()  # anchors of collections still open
    stack: list[list[Any]] = []  # [anchor, nodes so far] of each open collection
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        line = event.start_mark.line + 1
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise OutOfBounds(
                    f"nested deeper than {MAX_DEPTH} levels of lists and mappings", line=line
                )
            stack.append([event.anchor, 1])
            if event.anchor:
                building.add(event.anchor)
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
            anchor, size = stack.pop()
            if anchor:
                building.discard(anchor)
                sizes[anchor] = size
            if stack:
                stack[-1][1] += size
        elif isinstance(event, yaml.ScalarEvent):
            if event.anchor:
                sizes[event.anchor] = 1
            if stack:
                stack[-1][1] += 1
        elif isinstance(event, yaml.AliasEvent):
            if event.anchor in building:
                raise OutOfBounds(
                    f"alias *{event.anchor} is inside the node it refers to (a recursive "
                    "anchor); a scenario must be finite",
                    line=line,
                )
            size = sizes.get(event.anchor)
            if size is None:
                continue  # an undefined alias: the composer reports it
            expanded += size
            if expanded > MAX_ALIAS_NODES:
                raise OutOfBounds(
                    f"aliases expand to more than {MAX_ALIAS_NODES} nodes; "
                    "write the data out instead",
                    line=line,
                )
            if stack:
                stack[-1][1] += size


def check_yaml_tree(yaml: Any, root: Any) -> None:
    """Check a composed YAML tree: string keys, no repeated key, integers in bounds.

    Raises:
        OutOfBounds: a key is not a string or is repeated, or an integer is
            too long (`line` set).
    """
    seen: set[int] = set()
    pending = [root]
    while pending:
        node = pending.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))  # an alias shares its node: walked once
        line = node.start_mark.line + 1
        if isinstance(node, yaml.ScalarNode):
            if (
                node.tag == _YAML_INT
                and len(node.value.lstrip("+-").replace("_", "")) > MAX_INT_DIGITS
            ):
                raise OutOfBounds(
                    f"an integer of more than {MAX_INT_DIGITS} digits: {_clip(node.value)}",
                    line=line,
                )
        elif isinstance(node, yaml.SequenceNode):
            pending.extend(node.value)
        elif isinstance(node, yaml.MappingNode):
            keys: set[str] = set()
            for key, value in node.value:
                key_line = key.start_mark.line + 1
                if key.tag == _YAML_MERGE:
                    pending.append(value)
                    continue
                if not isinstance(key, yaml.ScalarNode) or key.tag != _YAML_STR:
                    shown = key.value if isinstance(key, yaml.ScalarNode) else "a list or mapping"
                    raise OutOfBounds(
                        f"a mapping key must be a string, as in JSON, got {_clip(shown)}; quote it",
                        line=key_line,
                    )
                if key.value in keys:
                    raise OutOfBounds(
                        f"key {_clip(key.value)} appears twice in the same mapping", line=key_line
                    )
                keys.add(key.value)
                pending.append(value)


def first_bad_text(data: Any) -> tuple[tuple[str | int, ...], str] | None:
    """The path to the first string (value or key) no UTF-8 output can hold, and why.

    Iterative, so that no input can exhaust the stack.
    """
    pending: list[tuple[tuple[str | int, ...], Any]] = [((), data)]
    while pending:
        at, value = pending.pop()
        if isinstance(value, str):
            if not _encodable(value):
                return at, f"text with a lone surrogate: {_clip(value)}"
        elif isinstance(value, Mapping):
            for key, item in reversed(list(value.items())):
                if isinstance(key, str) and not _encodable(key):
                    return (*at, key), f"a key with a lone surrogate: {_clip(key)}"
                pending.append(((*at, key), item))
        elif isinstance(value, list | tuple):
            pending.extend(((*at, index), item) for index, item in reversed(list(enumerate(value))))
    return None


def _encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _clip(value: object, limit: int = 60) -> str:
    shown = ascii(value) if isinstance(value, str) else repr(value)
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."
