"""Reading support scenarios: JSONL, a JSON array or YAML of `SupportScenario` records."""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from pathlib import Path

from pydantic import ValidationError

from convo_sim._errors import ScenarioError
from convo_sim.domains.support._scenario import SupportScenario
from convo_sim.scenarios import _bounds as bounds
from convo_sim.scenarios._reading import line_of, read_records

__all__ = ["BUNDLED", "bundled_scenarios", "load_scenarios"]

BUNDLED = ("support_examples",)
"""The bundled sets (`data/<name>.jsonl`)."""


def load_scenarios(path: str | Path) -> list[SupportScenario]:
    """Every scenario of a file.

    Raises:
        ScenarioError: the file cannot be read or a record is malformed;
            `exc.path` and `exc.line` say where.
    """
    path = Path(path)
    records = read_records(path)
    if not records:
        raise ScenarioError(
            "no scenarios found; expected one JSON object per line", path=path, line=1
        )
    out: list[SupportScenario] = []
    seen: dict[str, int] = {}
    for record in records:
        if not isinstance(record.data, Mapping):
            raise ScenarioError(
                "expected a JSON object (a support scenario)", path=path, line=record.line
            )
        bad_text = bounds.first_bad_text(record.data)
        if bad_text is not None:
            at, problem = bad_text
            raise ScenarioError(problem, path=path, line=line_of(record, at))
        try:
            scenario = SupportScenario.model_validate(record.data)
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(str(p) for p in error["loc"])
            at = tuple(error["loc"])
            raise ScenarioError(
                f"field {where!r}: {error['msg']}", path=path, line=line_of(record, at)
            ) from None
        if scenario.id in seen:
            raise ScenarioError(
                f"duplicate scenario id {scenario.id!r} (first used on line {seen[scenario.id]})",
                path=path,
                line=record.line,
            )
        seen[scenario.id] = record.line
        out.append(scenario)
    return out


def bundled_scenarios(name: str = "support_examples") -> list[SupportScenario]:
    """A bundled scenario set.

    Raises:
        ValueError: no set has that name.
    """
    if name not in BUNDLED:
        raise ValueError(f"unknown bundled support set {name!r}; expected one of {BUNDLED}")
    source = resources.files("convo_sim.domains.support") / "data" / f"{name}.jsonl"
    with resources.as_file(source) as path:
        return load_scenarios(path)
