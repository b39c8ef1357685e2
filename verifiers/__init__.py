"""Turn and final verifiers (installed as `convo_sim.verifiers`)."""

from __future__ import annotations

__all__: list[str] = []
