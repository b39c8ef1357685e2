"""Ray sized to the machine: more workers than CPUs still finish.

Each test starts a real local Ray (in a fresh `convo-sim` process, as a
reader runs the README's command) and is bounded in time.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from convo_sim import RayBackend
from convo_sim._errors import InputError
from convo_sim._sink import read_rollouts

CLI = [sys.executable, "-c", "import sys; from convo_sim.cli import main; sys.exit(main())"]


@pytest.mark.timeout(115)
def test_the_readme_ray_command_finishes_with_more_workers_than_cpus(tmp_path: Path) -> None:
    # The README's command is `--samples 8 --backend ray --workers 4`, which
    # hung on 2 cores: each worker reserved a whole CPU. Twice as many
    # workers as this machine has CPUs reproduces it anywhere.
    workers = 2 * (os.cpu_count() or 1)
    out = tmp_path / "rollouts.jsonl"
    done = subprocess.run(
        [
            *CLI,
            "run",
            "--samples",
            "8",
            "--backend",
            "ray",
            "--workers",
            str(workers),
            "--no-progress",
            "--out",
            str(out),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=105,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(read_rollouts(out)) == 80
    assert "wrote        80 records" in done.stdout


def test_workers_share_the_cluster_s_cpus() -> None:
    backend = RayBackend(num_workers=4)
    assert backend.cpus_per_worker(cluster_cpus=2.0, workers=4) == 0.5
    assert backend.cpus_per_worker(cluster_cpus=8.0, workers=4) == 1.0
    assert backend.cpus_per_worker(cluster_cpus=2.0, workers=3) == pytest.approx(0.6666, abs=1e-4)
    assert 3 * backend.cpus_per_worker(cluster_cpus=2.0, workers=3) <= 2.0


def test_asking_for_more_cpus_than_the_cluster_has_is_refused_up_front() -> None:
    backend = RayBackend(num_workers=4, num_cpus_per_worker=1.0)
    with pytest.raises(InputError, match=r"4 Ray workers x 1 CPU need 4 CPUs; the cluster has 2"):
        backend.cpus_per_worker(cluster_cpus=2.0, workers=4)


def test_the_cli_joins_a_cluster_by_address_and_passes_the_cpus() -> None:
    from convo_sim.cli import build_parser
    from convo_sim.cli.wiring import ray_backend

    args = build_parser().parse_args(
        [
            "run",
            "--backend",
            "ray",
            "--workers",
            "3",
            "--ray-address",
            "ray://head:10001",
            "--cpus-per-worker",
            "0.25",
        ]
    )
    backend = ray_backend(args)
    assert backend is not None
    assert (backend.address, backend.num_workers, backend.num_cpus_per_worker) == (
        "ray://head:10001",
        3,
        0.25,
    )
    default = ray_backend(build_parser().parse_args(["run", "--backend", "ray"]))
    assert default is not None and default.address is None and default.num_cpus_per_worker is None
    with pytest.raises(InputError, match="need --backend ray"):
        ray_backend(build_parser().parse_args(["run", "--ray-address", "auto"]))


def test_cpus_the_cluster_lacks_are_one_line_and_exit_2(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            *CLI,
            "run",
            "--backend",
            "ray",
            "--workers",
            "3",
            "--cpus-per-worker",
            "64",
            "--no-progress",
            "--out",
            str(tmp_path / "r.jsonl"),
        ],
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("convo-sim: error: 3 Ray workers x 64 CPU need 192 CPUs")
