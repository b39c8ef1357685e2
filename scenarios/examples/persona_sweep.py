"""A persona sweep: the same calendar goals, played by several personas.

    convo-sim run --script scenarios/examples/persona_sweep.py --out sweep.jsonl
    convo-sim report sweep.jsonl --html sweep.html

Each generated goal is copied once per persona; the persona name goes into
the scenario's `persona` (which picks the rule-based persona user) and into
its metadata (which the report groups by). `SAMPLES` runs every scenario
twice, each sample with its own seed, so pass^2 is defined.
"""

from __future__ import annotations

from convo_sim.domains.calendar import generate_scenarios
from convo_sim.scenarios import Scenario

PERSONAS = ("cooperative", "terse", "indecisive", "noisy", "impatient")
SAMPLES = 2


def scenarios() -> list[Scenario]:
    base = generate_scenarios(2, seed=11)
    return [
        s.model_copy(
            update={
                "id": f"{s.id}/{persona}",
                "persona": persona,
                "metadata": {**s.metadata, "persona": persona},
            }
        )
        for s in base
        for persona in PERSONAS
    ]
