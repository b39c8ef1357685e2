"""Where rollouts run: this process (`LocalBackend`) or a Ray cluster (`RayBackend`).

A backend takes the work items (`(scenario, sample_index)` pairs) and a
`RolloutPlan` and yields `Rollout`s as they finish. `RayBackend` imports Ray
only when it runs, so Ray stays an optional extra (`pip install
'convo-sim[ray]'`).
"""

from __future__ import annotations

from convo_sim.backends._local import LocalBackend
from convo_sim.backends._ray import RayBackend

__all__ = ["LocalBackend", "RayBackend"]
