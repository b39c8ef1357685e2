"""What every adapter does the same way: scenarios as data, steps as text."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from convo_sim._env import EnvStep
from convo_sim._messages import TOKEN_FIELDS, Message
from convo_sim._results import DialogueResult
from convo_sim.domains._domain import Domain
from convo_sim.domains._registry import resolve

__all__ = [
    "result_summary",
    "scenario_from_data",
    "scenario_spec",
    "scenario_to_data",
    "start_of",
    "step_info",
    "token_metadata",
    "user_text",
]


def user_text(messages: Sequence[Message]) -> str | None:
    """What the simulated user said, as one observation string (None: nothing)."""
    texts = [m.text for m in messages if m.role == "user"]
    return "\n\n".join(texts) if texts else None


def scenario_to_data(scenario: Any) -> dict[str, Any]:
    """A scenario as JSON, for a trainer's dataset row (`scenario_from_data` reads it back)."""
    dumped: dict[str, Any] = scenario.model_dump(mode="json")
    return dumped


def scenario_from_data(domain: Domain[Any], data: object) -> Any:
    """The domain's scenario from `scenario_to_data`'s JSON.

    Raises:
        ValueError: the data is not an object, or not a scenario of the domain.
    """
    if not isinstance(data, Mapping):
        raise ValueError(f"a scenario must be a JSON object, got {type(data).__name__}")
    return domain.scenario_type.model_validate(data)


def scenario_spec(scenario: Any, domain: str | Domain[Any], seed: int = 0) -> dict[str, Any]:
    """The `convo_sim` field of a trainer's dataset row: domain, scenario, seed."""
    return {"domain": resolve(domain).name, "scenario": scenario_to_data(scenario), "seed": seed}


def start_of(
    spec: object, default: str | Domain[Any] | None = None
) -> tuple[Domain[Any], Any, int]:
    """The domain, scenario and seed a row's `convo_sim` field names.

    Raises:
        ValueError: the field is missing or does not name a scenario of a domain.
    """
    if not isinstance(spec, Mapping):
        raise ValueError(
            "the row has no 'convo_sim' object naming its scenario (write rows with "
            "convo_sim.integrations' row helpers)"
        )
    try:
        name = spec.get("domain") or default
        if name is None:
            raise ValueError("no domain: the row's convo_sim.domain is missing")
        domain = resolve(name)
        scenario = scenario_from_data(domain, spec.get("scenario"))
        seed = int(spec.get("seed", 0))
    except Exception as exc:
        raise ValueError(f"convo_sim.scenario: {exc}".splitlines()[0]) from None
    return domain, scenario, seed


def token_metadata(item: Mapping[str, Any]) -> dict[str, Any]:
    """The token fields (`TOKEN_FIELDS`) a trainer attached to a generation, if all are there."""
    if all(name in item for name in TOKEN_FIELDS):
        return {name: item[name] for name in TOKEN_FIELDS}
    return {}


def result_summary(result: DialogueResult) -> dict[str, Any]:
    """The finished dialogue without its transcript and timings: small and JSON-able."""
    summary: dict[str, Any] = result.model_dump(
        mode="json", exclude={"transcript", "timings", "usage"}
    )
    return summary


def step_info(step: EnvStep) -> dict[str, Any]:
    """A step's `info` as JSON (the result summarised at the end)."""
    info = step.info
    out: dict[str, Any] = {
        "turn": info["turn"],
        "termination": info["termination"],
        "terminated_by": info["terminated_by"],
        "turn_scores": [s.model_dump(mode="json") for s in info["turn_scores"]],
    }
    if info["result"] is not None:
        out["result"] = result_summary(info["result"])
    return out
