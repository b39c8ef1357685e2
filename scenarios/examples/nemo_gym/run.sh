#!/usr/bin/env bash
# convo-sim inside NeMo-Gym, offline, end to end: NeMo-Gym's own servers
# (gymnasium_agent, vllm_model) and its own rollout collection (`gym eval
# run`) run the five bundled NeMo-Gym calendar rows with convo-sim's live
# simulated user and verifiers (this directory's resources server), and
# convo-sim's bundled server (`calendar-solver`) as the policy model. The
# last line printed is the mean reward.
#
#   bash scenarios/examples/nemo_gym/run.sh
#
# NeMo-Gym needs Python >= 3.12 (nemo-gym 0.2-0.4; 0.5+ needs 3.13.14), so it
# lives in a virtual environment of its own, made here when missing (about
# 4 minutes, 1.4 GB, from PyPI):
#   NEMO_GYM_VENV     its venv (default ~/.cache/convo-sim/nemo-gym-<version>)
#   NEMO_GYM_PYTHON   the Python to make it with (default: python3.12, then
#                     pyenv's newest 3.12/3.13)
#   NEMO_GYM_VERSION  default 0.4.0 (the newest that installs on Python < 3.13.14)
#   CONVO_SIM_VENV    the venv with convo-sim installed (default: the repo's .venv)
#   NEMO_GYM_OUT      where the rollouts go (default: a temporary directory)
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../../.." && pwd)"
VERSION="${NEMO_GYM_VERSION:-0.4.0}"
VENV="${NEMO_GYM_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/convo-sim/nemo-gym-$VERSION}"
CONVO_SIM_VENV="${CONVO_SIM_VENV:-$REPO/.venv}"
say() { echo "[nemo_gym/run.sh] $*" >&2; }

if [ ! -x "$CONVO_SIM_VENV/bin/python" ] || ! "$CONVO_SIM_VENV/bin/python" -c "import convo_sim, yaml" 2>/dev/null; then
  say "CONVO_SIM_VENV=$CONVO_SIM_VENV: expected a venv with convo-sim[nemo-gym] installed (pip install -e '.[nemo-gym]')"
  exit 2
fi

if [ ! -x "$VENV/bin/gym" ]; then
  PY="${NEMO_GYM_PYTHON:-}"
  if [ -z "$PY" ]; then
    pyenv="${PYENV_ROOT:-$HOME/.pyenv}/versions"
    # 3.12 first: NeMo-Gym 0.4.0's own environments are made on 3.12.
    for candidate in python3.12 $(ls -d "$pyenv"/3.12*/bin/python 2>/dev/null | sort -V -r) \
        python3.13 $(ls -d "$pyenv"/3.13*/bin/python 2>/dev/null | sort -V -r); do
      # (a pyenv shim may exist and still not run: try each one)
      if "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1; then
        PY="$(command -v "$candidate")"; break
      fi
    done
  fi
  if [ -z "$PY" ]; then
    say "no Python 3.12+ found for NeMo-Gym: set NEMO_GYM_PYTHON"
    exit 2
  fi
  say "making NeMo-Gym's environment at $VENV with $PY (nemo-gym==$VERSION)"
  mkdir -p "$(dirname "$VENV")"
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install -q "nemo-gym==$VERSION" >&2
fi

WORK="$(mktemp -d)"
OUT="${NEMO_GYM_OUT:-$WORK}"
mkdir -p "$OUT"
PIDS=()
cleanup() {
  # SIGTERM stops `gym env start`, its servers and its Ray cluster.
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { "$CONVO_SIM_VENV/bin/python" -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])"; }

# NeMo-Gym finds a server's code in ./<server type>/<name> and, with
# +skip_venv_if_present, its environment in <uv_venv_dir>/<type>/<name>/.venv:
# NeMo-Gym's own servers use its venv, convo-sim's server convo-sim's.
cp -r "$HERE/resources_servers" "$WORK/"
for server in responses_api_agents/gymnasium_agent responses_api_models/vllm_model; do
  mkdir -p "$WORK/venvs/$server" && ln -s "$VENV" "$WORK/venvs/$server/.venv"
done
mkdir -p "$WORK/venvs/resources_servers/convo_sim"
ln -s "$(cd "$CONVO_SIM_VENV" && pwd)" "$WORK/venvs/resources_servers/convo_sim/.venv"

# The policy: convo-sim's bundled OpenAI-compatible server, which answers as
# vLLM does (token ids, logprobs, /tokenize), behind NeMo-Gym's vllm_model.
POLICY_PORT="$(free_port)"
"$CONVO_SIM_VENV/bin/convo-sim" serve --port "$POLICY_PORT" >"$WORK/policy.log" 2>&1 &
PIDS+=($!)
cat >"$WORK/policy.yaml" <<EOF
policy_model:
  responses_api_models:
    vllm_model:
      entrypoint: app.py
      base_url: http://127.0.0.1:$POLICY_PORT/v1
      api_key: dummy
      model: calendar-solver
      return_token_id_information: true
      uses_reasoning_parser: false
EOF

# The five bundled NeMo-Gym rows, replayed by convo-sim's scripted user turn
# by turn (the rows' own assistant turns are dropped; the policy answers).
"$CONVO_SIM_VENV/bin/python" - "$WORK/rows.jsonl" <<'EOF'
import json, sys
from importlib.resources import as_file, files

from convo_sim.domains.calendar import load_scenarios
from convo_sim.integrations.nemo_gym import nemo_gym_rows

with as_file(files("convo_sim.domains.calendar") / "data" / "nemo_calendar_example.jsonl") as p:
    scenarios = load_scenarios(p, nemo="replay")
with open(sys.argv[1], "w") as f:
    for row in nemo_gym_rows(scenarios, agent="convo_sim_agent"):
        f.write(json.dumps(row) + "\n")
EOF

cd "$WORK"
# Offline: no W&B, no Hub; Ray on loopback (on Linux it would advertise eth0).
export WANDB_MODE=disabled HF_HUB_OFFLINE=1 RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
setsid "$VENV/bin/gym" env start --config policy.yaml \
  --config resources_servers/convo_sim/configs/convo_sim.yaml \
  +uv_venv_dir="$WORK/venvs" +skip_venv_if_present=true >"$WORK/env.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 150); do
  grep -q "servers ready" "$WORK/env.log" && break
  if ! kill -0 "${PIDS[1]}" 2>/dev/null; then say "gym env start failed:"; tail -20 "$WORK/env.log" >&2; exit 1; fi
  sleep 2
done
grep -q "servers ready" "$WORK/env.log" || { say "servers not ready after 300 s:"; tail -20 "$WORK/env.log" >&2; exit 1; }

"$VENV/bin/gym" eval run --no-serve --input rows.jsonl --output "$OUT/rollouts.jsonl" \
  --concurrency 5 >"$WORK/collect.log" 2>&1 || { say "gym eval run failed:"; tail -20 "$WORK/collect.log" >&2; exit 1; }
say "rollouts: $OUT/rollouts.jsonl (NeMo-Gym $VERSION)"
"$CONVO_SIM_VENV/bin/python" - "$OUT/rollouts.jsonl" <<'EOF'
import json, sys

rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
assert len(rows) == 5, f"expected 5 rollouts, got {len(rows)}"
print(sum(float(r["reward"]) for r in rows) / len(rows))
EOF
