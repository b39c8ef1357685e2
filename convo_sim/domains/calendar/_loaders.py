"""Read scenario files: NeMo-Gym rows, seed records and convo-sim's native format.

`load_scenarios(path)` reads JSONL (one JSON object per line), a JSON array,
or YAML (`.yaml`/`.yml`: a list of records, or a mapping whose `scenarios`
key holds the list). The format is decided per file, by the first record:

* NeMo-Gym rows: `responses_create_params.input` + `exp_cal_state`;
* seed records: `expected_state` (an exact calendar) and the conversation;
* native records: `id` + `steps` (see `docs/scenarios.md`);
* saved scenarios: `CalendarScenario.model_dump_json()` lines (`id`,
  `goal` or `prefix`, ...), what `convo-sim generate` and `experiment` write.

Every malformed input raises `ScenarioError` with the file, the 1-based line
and what was expected; nothing else escapes. What a file may make the
loader do is bounded (size, nesting, numbers, YAML aliases; see
`convo_sim.scenarios._bounds`), and every value a run uses (times,
constraints, durations, ids, text) is checked here, so that a file that
loads also runs.
"""

from __future__ import annotations

import importlib
import importlib.resources
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from convo_sim._errors import ScenarioError
from convo_sim._messages import Message, Transcript
from convo_sim.domains.calendar._model import ExpectedState, ExpectedStateError
from convo_sim.domains.calendar._prompts import CALENDAR_SYSTEM_PROMPT
from convo_sim.domains.calendar._scenario import CalendarScenario, _within_day
from convo_sim.domains.calendar._times import MINUTES_PER_DAY
from convo_sim.scenarios import _bounds as bounds
from convo_sim.scenarios._reading import Record, line_of, read_records
from convo_sim.users._persona import UnknownPersonaError, get_persona

__all__ = [
    "BundledSet",
    "NemoMode",
    "bundled_scenarios",
    "load_scenarios",
    "native_scenario",
    "nemo_replay_scenario",
    "nemo_scenario",
    "seed_scenario",
]

NemoMode = Literal["prefix", "replay"]
BundledSet = Literal["calendar_examples", "nemo_calendar_example"]
Format = Literal["nemo", "seed", "native", "saved"]
_Path = tuple[str | int, ...]

_NATIVE_FIELDS = (
    "id", "steps", "persona", "max_turns", "seed", "system_prompt", "min_time", "max_time",
    "metadata",
)  # fmt: skip


class _Problem(Exception):
    """A record is malformed; `at` is the field path, resolved to a line by the loader."""

    def __init__(self, problem: str, at: _Path = (), scenario_id: str | None = None) -> None:
        self.problem = problem
        self.at = at
        self.scenario_id = scenario_id
        super().__init__(problem)


# ---------------------------------------------------------------- public API


def load_scenarios(path: str | Path, *, nemo: NemoMode = "prefix") -> list[CalendarScenario]:
    """Read every scenario in a file.

    Args:
        path: a JSONL, JSON or YAML file in one of the three formats.
        nemo: how NeMo-Gym rows become scenarios: `prefix` continues the
            row's conversation for one graded reply (as NeMo-Gym does);
            `replay` has a scripted user say every user message of the row
            again (see `nemo_replay_scenario`).

    Raises:
        ScenarioError: the file cannot be read, or a record is malformed;
            `exc.path` and `exc.line` say where.
    """
    path = Path(path)
    records = read_records(path)
    if not records:
        raise ScenarioError(
            "no scenarios found; expected one JSON object per line, a JSON array or a YAML list",
            path=path,
            line=1,
        )
    kind = _detect(records[0], path)
    scenarios: list[CalendarScenario] = []
    first_line: dict[str, int] = {}
    for index, record in enumerate(records):
        if not isinstance(record.data, Mapping):
            raise ScenarioError(
                f"expected a JSON object, got {_clip(record.data)}", path=path, line=record.line
            )
        default_id = f"{path.stem}-{index}"
        bad_text = bounds.first_bad_text(record.data)
        if bad_text is not None:
            at, problem = bad_text
            where = f"field {_dotted(at)!r}: " if at else ""
            raise ScenarioError(f"{where}{problem}", path=path, line=line_of(record, at))
        try:
            scenario = _build(kind, record.data, default_id, nemo)
        except _Problem as problem:
            raise ScenarioError(
                problem.problem,
                path=path,
                line=line_of(record, problem.at),
                scenario_id=problem.scenario_id,
            ) from None
        if scenario.id in first_line:
            raise ScenarioError(
                f"duplicate scenario id {scenario.id!r} (first used on line {first_line[scenario.id]})",
                path=path,
                line=line_of(record, ("id",)),
            )
        first_line[scenario.id] = record.line
        scenarios.append(scenario)
    return scenarios


def bundled_scenarios(name: BundledSet = "calendar_examples") -> list[CalendarScenario]:
    """The scenario sets shipped with convo-sim.

    `calendar_examples` holds hand-written native calendar scenarios;
    `nemo_calendar_example` the five public NeMo-Gym example rows (Apache-2.0),
    as prefixes.

    Raises:
        ScenarioError: the bundled file is missing or malformed (a broken install).
    """
    resource = importlib.resources.files("convo_sim.domains.calendar") / "data" / f"{name}.jsonl"
    with importlib.resources.as_file(resource) as path:
        return load_scenarios(path)


def nemo_scenario(row: Mapping[str, Any], *, id: str | None = None) -> CalendarScenario:
    """A NeMo-Gym row as NeMo-Gym runs it: continue the prefix for one graded reply.

    The whole `responses_create_params.input` is the prefix (system prompt and
    conversation, ending on a user message); the user's later turns are not
    in the data, so `user_script` is empty and `max_turns` is 1.

    Raises:
        ScenarioError: the row is malformed.
    """
    return _public(lambda: _nemo(row, id or "nemo-0", "prefix"))


def nemo_replay_scenario(row: Mapping[str, Any], *, id: str | None = None) -> CalendarScenario:
    """A NeMo-Gym row replayed: the prefix is only the system prompt, and a
    scripted user says every user message of the row again, in order.

    An assistant that understands the requests should end on a calendar that
    passes `exp_cal_state`; the row's own assistant turns are dropped.

    Raises:
        ScenarioError: the row is malformed.
    """
    return _public(lambda: _nemo(row, id or "nemo-replay-0", "replay"))


def seed_scenario(record: Mapping[str, Any], *, id: str | None = None) -> CalendarScenario:
    """A seed-format record: a conversation and the exact calendar expected after it.

    Raises:
        ScenarioError: the record is malformed.
    """
    return _public(lambda: _seed(record, id or "seed-0"))


def native_scenario(record: Mapping[str, Any]) -> CalendarScenario:
    """A native convo-sim record (`id`, `steps`, ...; see `docs/scenarios.md`).

    Raises:
        ScenarioError: the record is malformed.
    """
    return _public(lambda: _native(record))


def _public(build: Callable[[], CalendarScenario]) -> CalendarScenario:
    try:
        return build()
    except _Problem as problem:
        raise ScenarioError(problem.problem, scenario_id=problem.scenario_id) from None


# ---------------------------------------------------------------- formats


def _detect(record: Record, path: Path) -> Format:
    data = record.data
    if isinstance(data, Mapping):
        # Only a saved `Scenario` has `goal` or `prefix`; the other formats
        # spell them `steps` and `messages`/`input`.
        if "goal" in data or "prefix" in data:
            return "saved"
        if "responses_create_params" in data or "exp_cal_state" in data:
            return "nemo"
        if "expected_state" in data:
            return "seed"
        if "steps" in data:
            return "native"
    raise ScenarioError(
        "not a scenario record: expected a native scenario ('id' and 'steps'), a NeMo-Gym row "
        "('responses_create_params' and 'exp_cal_state') or a seed record ('expected_state' "
        f"and a conversation), got {_clip(data)}",
        path=path,
        line=record.line,
    )


def _build(
    kind: Format, data: Mapping[str, Any], default_id: str, nemo: NemoMode
) -> CalendarScenario:
    if kind == "nemo":
        return _nemo(data, default_id, nemo)
    if kind == "seed":
        return _seed(data, default_id)
    if kind == "saved":
        return _saved(data)
    return _native(data)


def _nemo(row: Mapping[str, Any], default_id: str, mode: NemoMode) -> CalendarScenario:
    params = _require(row, "responses_create_params", Mapping, "an object")
    raw_input = _require(
        params,
        "input",
        (list, str),
        "a list of Responses input items",
        at=("responses_create_params",),
    )
    transcript = _transcript(
        lambda: Transcript.from_responses_input(raw_input), ("responses_create_params", "input")
    )
    expected = _require(row, "exp_cal_state", Mapping, "an object mapping event ids to events")
    _expected_state(expected, "exp_cal_state", ExpectedState.from_nemo)
    scenario_id = _optional_id(row, default_id)
    metadata: dict[str, Any] = {"source": "nemo-gym"}
    # Request parameters other than the conversation (tools, temperature, ...)
    # ride along so that rollout records keep NeMo-Gym's request shape.
    extra_params = {k: v for k, v in params.items() if k != "input"}
    if extra_params:
        metadata["responses_create_params"] = extra_params
    if mode == "prefix":
        return _scenario(
            id=scenario_id,
            prefix=transcript.messages,
            expected_state=expected,
            max_turns=1,
            metadata=metadata,
        )
    head = _leading_instructions(transcript.messages)
    script = tuple(m.text for m in transcript.messages if m.role == "user")
    return _scenario(
        id=scenario_id,
        prefix=head,
        user_script=script,
        expected_state=expected,
        max_turns=len(script) + 1,
        metadata={**metadata, "replay": True},
    )


def _seed(record: Mapping[str, Any], default_id: str) -> CalendarScenario:
    expected = _require(record, "expected_state", Mapping, "an object mapping event ids to events")
    _expected_state(expected, "expected_state", ExpectedState.from_seed)
    prefix: tuple[Message, ...] = ()
    if "messages" in record:
        messages = _require(record, "messages", list, "a list of chat messages")
        prefix = _transcript(lambda: Transcript.from_openai(messages), ("messages",)).messages
    elif "input" in record or "responses_create_params" in record:
        source = record.get("responses_create_params", record)
        at: _Path = ("responses_create_params",) if source is not record else ()
        if not isinstance(source, Mapping):
            raise _Problem(
                f"field 'responses_create_params': expected an object, got {_clip(source)}", at
            )
        raw = _require(source, "input", (list, str), "a list of Responses input items", at=at)
        prefix = _transcript(lambda: Transcript.from_responses_input(raw), (*at, "input")).messages
    script = record.get("user_script", [])
    if not isinstance(script, list) or not all(isinstance(s, str) for s in script):
        raise _Problem(
            f"field 'user_script': expected a list of strings, got {_clip(script)}",
            ("user_script",),
        )
    if not prefix and not script:
        raise _Problem(
            "a seed record needs its conversation: 'messages' (chat messages), 'input' "
            "(Responses items) or 'user_script' (the user's messages)"
        )
    system_prompt = record.get("system_prompt", CALENDAR_SYSTEM_PROMPT)
    if not isinstance(system_prompt, str):
        raise _Problem(
            f"field 'system_prompt': expected a string, got {_clip(system_prompt)}",
            ("system_prompt",),
        )
    max_turns = record.get("max_turns", len(script) + 1 if script else 1)
    return _scenario(
        id=_optional_id(record, default_id),
        system_prompt=system_prompt,
        prefix=prefix,
        user_script=tuple(script),
        expected_state=expected,
        max_turns=max_turns,
        metadata={"source": "seed"},
    )


def _saved(record: Mapping[str, Any]) -> CalendarScenario:
    # The model's own fields, validated strictly as JSON (no coercion), then
    # the same checks as a native record's: the expected calendar and the persona.
    unknown = [key for key in record if key not in CalendarScenario.model_fields]
    if unknown:
        raise _Problem(
            f"unknown field {unknown[0]!r}; a saved scenario has the fields "
            f"{', '.join(CalendarScenario.model_fields)}",
            (unknown[0],),
        )
    try:
        scenario = CalendarScenario.model_validate_json(
            json.dumps(record, default=str), strict=True
        )
    except ValidationError as exc:
        raise _from_validation(exc) from None
    if record.get("expected_state") is not None:
        _expected_state(record["expected_state"], "expected_state", _either_state)
    _known_persona(scenario)
    return scenario


def _either_state(state: Mapping[str, Any]) -> ExpectedState:
    # A saved scenario keeps its calendar in the format it was read in: the
    # seed format's events have a start time, NeMo-Gym's a window.
    seed = any(isinstance(e, Mapping) and "start_time" in e for e in state.values())
    return ExpectedState.from_seed(state) if seed else ExpectedState.from_nemo(state)


def _known_persona(scenario: CalendarScenario) -> None:
    # The goal-driven user plays the persona by name, so a misspelt name is
    # caught here, with its line, rather than when the first dialogue starts.
    if scenario.persona is not None:
        try:
            get_persona(scenario.persona)
        except UnknownPersonaError as exc:
            raise _Problem(
                f"scenario {scenario.id!r}: field 'persona': {exc}", ("persona",), scenario.id
            ) from None


def _native(record: Mapping[str, Any]) -> CalendarScenario:
    unknown = [key for key in record if key not in _NATIVE_FIELDS]
    if unknown:
        raise _Problem(
            f"unknown field {unknown[0]!r}; a native scenario has the fields {', '.join(_NATIVE_FIELDS)}",
            (unknown[0],),
        )
    for key in ("id", "steps"):
        if key not in record:
            raise _Problem(f"missing field {key!r}")
    goal = {"steps": record["steps"]}
    goal.update({key: record[key] for key in ("min_time", "max_time") if key in record})
    data: dict[str, Any] = {
        key: record[key]
        for key in ("id", "persona", "max_turns", "seed", "system_prompt", "metadata")
        if key in record
    }
    data.setdefault("system_prompt", CALENDAR_SYSTEM_PROMPT)
    data["goal"] = goal
    try:
        # Strict JSON validation: a duration of "60" or an id of 7 is a
        # mistake in a hand-written file, not something to coerce.
        payload = json.dumps(data, default=str)
        scenario = CalendarScenario.model_validate_json(payload, strict=True)
    except ValidationError as exc:
        raise _from_validation(exc, strip=("goal",)) from None
    _known_persona(scenario)
    return scenario


# ---------------------------------------------------------------- helpers


def _scenario(**fields: Any) -> CalendarScenario:
    try:
        return CalendarScenario(**fields)
    except ValidationError as exc:
        raise _from_validation(exc) from None


def _from_validation(exc: ValidationError, strip: tuple[str, ...] = ()) -> _Problem:
    error = exc.errors()[0]
    loc = tuple(error["loc"])
    if loc[: len(strip)] == strip:
        loc = loc[len(strip) :]
    where = _dotted(loc)
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "missing":
        return _Problem(f"missing field {where!r}", loc[:-1])
    if not where:
        return _Problem(message, loc)
    if error["type"] == "value_error":  # our validators already name the value
        return _Problem(f"field {where!r}: {message}", loc)
    return _Problem(f"field {where!r}: {message}, got {_clip(error.get('input'))}", loc)


def _dotted(loc: Sequence[str | int]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _require(
    data: Mapping[str, Any],
    key: str,
    kind: type | tuple[type, ...],
    expected: str,
    *,
    at: _Path = (),
) -> Any:
    where = _dotted((*at, key))
    if key not in data:
        raise _Problem(f"missing field {where!r}", at)
    value = data[key]
    if not isinstance(value, kind):
        raise _Problem(f"field {where!r}: expected {expected}, got {_clip(value)}", (*at, key))
    return value


def _optional_id(record: Mapping[str, Any], default: str) -> str:
    value = record.get("id", default)
    if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
        raise _Problem(f"field 'id': expected a non-empty string, got {_clip(value)}", ("id",))
    return str(value)


def _transcript(build: Callable[[], Transcript], at: _Path) -> Transcript:
    try:
        return build()
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise _Problem(f"field {_dotted(at)!r}: {exc}", at) from None


def _expected_state(
    data: Mapping[str, Any], key: str, read: Callable[[Mapping[str, Any]], ExpectedState]
) -> None:
    try:
        state = read(data)
    except ExpectedStateError as exc:
        at: _Path = (key, *(p for p in (exc.event_id, exc.field) if p is not None))
        raise _Problem(f"field {key!r}: {exc}", at) from None
    # What the reader accepts but a run could not use: an event longer than
    # the day, or a constraint time of 24:00, which no one can say.
    for event_id, event in state.items():
        if event.duration > MINUTES_PER_DAY:
            raise _Problem(
                f"field {key!r}: event {event_id!r}: duration must be at most "
                f"{MINUTES_PER_DAY} minutes (a day), got {event.duration!r}",
                (key, event_id, "duration"),
            )
        if event.constraint is not None and not _within_day(event.constraint):
            raise _Problem(
                f"field {key!r}: event {event_id!r}: constraint times must be before "
                "midnight (24:00 is the end of the day, not a time of it)",
                (key, event_id, "constraint"),
            )


def _leading_instructions(messages: Sequence[Message]) -> tuple[Message, ...]:
    head: list[Message] = []
    for message in messages:
        if message.role not in ("system", "developer"):
            break
        head.append(message)
    return tuple(head)


def _clip(value: object, limit: int = 60) -> str:
    shown = repr(value)
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."
