"""NeMo-Gym's entrypoint for convo-sim's resources server (`gym env start` runs it).

It runs in convo-sim's own environment (Python 3.11+), which NeMo-Gym
activates from `<uv_venv_dir>/resources_servers/convo_sim/.venv`; host,
port and options come from NeMo-Gym's config in the environment.
"""

from convo_sim.integrations.nemo_gym import main

if __name__ == "__main__":
    raise SystemExit(main([]))
