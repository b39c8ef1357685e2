"""convo-sim inside trainers: adapters over the step-wise `DialogueEnv`.

Each adapter is a module of its own, importable without the trainer's
package (that is an extra, imported only when the adapter is used):

- `convo_sim.integrations.nemo_gym`: a server speaking NeMo-Gym's
  gymnasium-style resources-server protocol (`/reset`, `/step`), and its
  `/seed_session` + `/verify` protocol, over HTTP (NeMo-Gym needs a newer
  Python than convo-sim).
- `convo_sim.integrations.skyrl`: a SkyRL-gym `BaseTextEnv`.
- `convo_sim.integrations.verifiers`: a PrimeIntellect verifiers `MultiTurnEnv`.
- `convo_sim.integrations.trainers`: verl's `BaseInteraction`, OpenRLHF's
  `AgentInstanceBase` and an OpenEnv-style `reset`/`step` environment (for
  TRL), written to their documented signatures.

docs/integrations.md has each trainer's recipe.
"""

from __future__ import annotations

__all__: list[str] = []
