"""Writing scenarios to a file that `--scenarios` reads back.

One `Scenario.model_dump_json()` per line (JSONL): every field the run
uses, in the model's own names, which a domain's loader reads as its
"saved" format (the calendar's: `convo_sim.domains.calendar.load_scenarios`).
`convo-sim generate` and `convo-sim experiment` write scenarios this way.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from convo_sim._errors import InputError
from convo_sim.scenarios._model import Scenario

__all__ = ["save_scenarios"]


def save_scenarios(path: str | Path, scenarios: Iterable[Scenario]) -> int:
    """Write `scenarios` to `path`, one JSON object per line; returns how many.

    The file is written beside `path` and renamed over it, so a reader
    never sees half a file and an interrupted write leaves the old one.

    Raises:
        InputError: the file cannot be written.
    """
    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    count = 0
    try:
        with tmp.open("w", encoding="utf-8") as out:
            for scenario in scenarios:
                out.write(scenario.model_dump_json() + "\n")
                count += 1
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise InputError(
            f"cannot write the scenarios: {exc.strerror or exc}", path=target
        ) from None
    return count
