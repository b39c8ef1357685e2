"""Resumable JSONL output: torn lines, kill -9, Ctrl-C, and re-running to completion."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from io import StringIO
from pathlib import Path

import anyio
import pytest

from convo_sim import (
    Actor,
    InputError,
    Progress,
    RolloutPlan,
    RolloutSink,
    open_rollouts,
    read_rollouts,
    write_rollouts,
)
from convo_sim.agents import FunctionAssistant
from convo_sim.scenarios import Scenario
from convo_sim.users import ScriptedUser

ANYIO_BACKENDS = ("asyncio", "trio")  # the core runs on both; see tests/conftest.py

pytestmark = pytest.mark.timeout(60)

SCENARIOS = 20
SAMPLES = 2

# A run of slow scripted dialogues, writing to argv[1]; argv[2] is the
# per-message delay. Interrupted runs and finishing runs are the same command.
SCRIPT = (
    textwrap.dedent(
        """
    import random, sys
    import anyio
    from convo_sim import RolloutPlan, configure_logging, write_rollouts
    from convo_sim.agents import FunctionAssistant
    from convo_sim.scenarios import Scenario
    from convo_sim.users import FunctionUser

    DELAY = float(sys.argv[2])
    configure_logging("warning")

    def assistant(scenario, seed):
        rng = random.Random(seed)
        async def reply(view):
            await anyio.sleep(DELAY)
            return f"{scenario.id}: noted {rng.randint(0, 10**9)}"
        return FunctionAssistant(reply)

    def user(scenario, seed):
        rng = random.Random(seed + 1)
        async def say(view):
            await anyio.sleep(DELAY)
            return "###STOP###" if view.turn > 2 else f"more {rng.randint(0, 10**9)}"
        return FunctionUser(say)

    async def main():
        scenarios = [Scenario(id=f"s{i}", system_prompt="Help.") for i in range(@SCENARIOS@)]
        plan = RolloutPlan(assistant=assistant, user=user, concurrency=4, seed=11)
        stats = await write_rollouts(sys.argv[1], scenarios, plan, samples_per_scenario=@SAMPLES@)
        print(stats.resumed, stats.written)

    try:
        anyio.run(main)
    except KeyboardInterrupt:
        sys.exit(130)
    """
    )
    .replace("@SCENARIOS@", str(SCENARIOS))
    .replace("@SAMPLES@", str(SAMPLES))
)


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "run_rollouts.py"
    path.write_text(SCRIPT)
    return path


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True) if path.exists() else []


def start(script: Path, out: Path, delay: float) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(script), str(out), str(delay)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_lines(
    path: Path, count: int, proc: subprocess.Popen[str], timeout: float = 20
) -> None:
    deadline = time.monotonic() + timeout
    while len(lines_of(path)) < count:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the run wrote too little"
        time.sleep(0.02)


def finish(script: Path, out: Path) -> tuple[int, int]:
    done = subprocess.run(
        [sys.executable, str(script), str(out), "0"], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    resumed, written = map(int, done.stdout.split())
    return resumed, written


def assert_complete(path: Path) -> None:
    raw = path.read_bytes()
    assert raw.endswith(b"\n")
    records = read_rollouts(path)
    keys = [r.key for r in records]
    assert sorted(keys) == sorted((f"s{i}", k) for i in range(SCENARIOS) for k in range(SAMPLES))
    assert len(raw.splitlines()) == len(records)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["kill-9", "ctrl-c"])
def test_an_interrupted_run_resumes_without_duplicates_or_gaps(
    script: Path, tmp_path: Path, sig: signal.Signals
) -> None:
    out = tmp_path / "rollouts.jsonl"
    proc = start(script, out, delay=0.02)
    wait_for_lines(out, 5, proc)
    proc.send_signal(sig)
    proc.communicate(timeout=15)
    if sig == signal.SIGINT:
        assert proc.returncode == 130
        assert out.read_bytes().endswith(b"\n")  # a graceful stop never tears a line
    before = lines_of(out)
    complete = [line for line in before if line.endswith(b"\n")]
    assert 5 <= len(complete) < SCENARIOS * SAMPLES

    resumed, written = finish(script, out)
    assert resumed == len(complete)
    assert resumed + written == SCENARIOS * SAMPLES
    assert lines_of(out)[: len(complete)] == complete  # earlier records are kept as they were
    assert_complete(out)

    # The resumed file holds the same dialogues as an uninterrupted run.
    clean = tmp_path / "clean.jsonl"
    assert finish(script, clean) == (0, SCENARIOS * SAMPLES)
    by_key = {r.key: r.responses_create_params for r in read_rollouts(clean)}
    assert {r.key: r.responses_create_params for r in read_rollouts(out)} == by_key

    # Running the finished command again does nothing.
    assert finish(script, out) == (SCENARIOS * SAMPLES, 0)
    assert_complete(out)


def assistant(scenario: Scenario, seed: int) -> Actor:
    return FunctionAssistant(lambda view: f"ok {seed % 1000}")


def user(scenario: Scenario, seed: int) -> Actor:
    return ScriptedUser(["book it"])


def scenario_list(n: int) -> list[Scenario]:
    return [Scenario(id=f"s{i}") for i in range(n)]


async def first_records(path: Path, n: int) -> None:
    with anyio.fail_after(10), RolloutSink(path) as sink:
        async with open_rollouts(
            scenario_list(n), RolloutPlan(assistant=assistant, user=user, seed=1)
        ) as rollouts:
            async for r in rollouts:
                sink.write(r)


@pytest.mark.parametrize(
    "tail",
    [b'{"responses_create_params": {"inp', b"{not json}", b'{"reward": 1.0}'],
    ids=["cut-short", "garbage-no-newline", "incomplete-record-no-newline"],
)
async def test_a_torn_last_line_is_cut_and_its_sample_rerun(tmp_path: Path, tail: bytes) -> None:
    path = tmp_path / "out.jsonl"
    await first_records(path, 3)
    good = path.read_bytes()
    path.write_bytes(good + tail)
    sink = RolloutSink(path)
    done = sink.open()
    sink.close()
    assert done == {("s0", 0), ("s1", 0), ("s2", 0)}
    assert path.read_bytes() == good
    with anyio.fail_after(10):
        stats = await write_rollouts(
            path, scenario_list(4), RolloutPlan(assistant=assistant, user=user, seed=1)
        )
    assert (stats.total, stats.resumed, stats.written) == (4, 3, 1)
    assert sorted(r.key for r in read_rollouts(path)) == [(f"s{i}", 0) for i in range(4)]


@pytest.mark.parametrize("tail", [b"{not json}\n", b'{"reward": 1.0}\n'])
async def test_a_complete_bad_last_line_is_an_input_error_not_a_torn_write(
    tmp_path: Path, tail: bytes
) -> None:
    # The writer ends each record with its newline in one write, so a crash
    # cannot leave a complete line: one that does not parse is damage, and
    # resuming over it (or reporting without it) would hide that.
    path = tmp_path / "out.jsonl"
    await first_records(path, 2)
    good = path.read_bytes()
    path.write_bytes(good + tail)
    with pytest.raises(InputError) as info:
        RolloutSink(path).open()
    assert (info.value.path, info.value.line) == (str(path), 3)
    with pytest.raises(InputError):
        read_rollouts(path)
    assert path.read_bytes() == good + tail


async def test_a_bad_line_in_the_middle_is_an_input_error(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    await first_records(path, 2)
    first, second = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(first + b"oops\n" + second)
    with pytest.raises(InputError) as info:
        RolloutSink(path).open()
    assert (info.value.path, info.value.line) == (str(path), 2)
    with pytest.raises(InputError) as info:
        read_rollouts(path)
    assert info.value.line == 2


async def test_read_rollouts_ignores_a_torn_last_line_and_needs_the_file(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    await first_records(path, 2)
    path.write_bytes(path.read_bytes() + b'{"scenario_id": "s')
    assert sorted(r.key for r in read_rollouts(path)) == [("s0", 0), ("s1", 0)]
    with pytest.raises(InputError) as info:
        read_rollouts(tmp_path / "missing.jsonl")
    assert info.value.path == str(tmp_path / "missing.jsonl")


async def test_no_resume_starts_over_and_another_seed_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    plan = RolloutPlan(assistant=assistant, user=user, seed=1)
    with anyio.fail_after(10):
        await write_rollouts(path, scenario_list(3), plan)
        with pytest.raises(InputError) as info:
            await write_rollouts(
                path, scenario_list(3), RolloutPlan(assistant=assistant, user=user, seed=2)
            )
        assert info.value.path == str(path)
        assert len(read_rollouts(path)) == 3  # refused before touching the file
        stats = await write_rollouts(
            path,
            scenario_list(2),
            RolloutPlan(assistant=assistant, user=user, seed=2),
            resume=False,
        )
    assert (stats.resumed, stats.written) == (0, 2)
    assert [json.loads(line)["seed"] for line in path.read_text().splitlines()] == [
        r.seed for r in read_rollouts(path)
    ]
    assert sorted(r.key for r in read_rollouts(path)) == [("s0", 0), ("s1", 0)]


async def test_write_rollouts_reports_progress_on_the_given_stream(tmp_path: Path) -> None:
    stream = StringIO()
    progress = Progress(stream=stream, tty=False, interval=0.0)
    with anyio.fail_after(10):
        await write_rollouts(
            tmp_path / "out.jsonl",
            scenario_list(3),
            RolloutPlan(assistant=assistant, user=user),
            samples_per_scenario=2,
            progress=progress,
        )
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("rollouts 0/6 (0%)")
    assert lines[-1].startswith("rollouts 6/6 (100%)")
    assert len(lines) >= 7  # start, one per rollout, close


def test_sink_write_needs_an_open_sink(tmp_path: Path) -> None:
    sink = RolloutSink(tmp_path / "x.jsonl")
    record = None

    async def one() -> None:
        nonlocal record
        async with open_rollouts(
            scenario_list(1), RolloutPlan(assistant=assistant, user=user)
        ) as rollouts:
            async for r in rollouts:
                record = r

    anyio.run(one)
    assert record is not None
    with pytest.raises(RuntimeError):
        sink.write(record)


# -- a last record without its newline, a second writer, duplicates ----------------


async def test_a_last_record_without_its_newline_is_completed_not_glued(tmp_path: Path) -> None:
    # `truncate -s -1` on a finished file: the last record is whole but its
    # newline is gone; the next record used to be appended on the same line.
    path = tmp_path / "out.jsonl"
    await first_records(path, 3)
    with path.open("r+b") as f:
        f.truncate(path.stat().st_size - 1)
    plan = RolloutPlan(assistant=assistant, user=user, seed=1)
    with anyio.fail_after(10):
        stats = await write_rollouts(path, scenario_list(5), plan)
    assert (stats.total, stats.resumed, stats.written) == (5, 3, 2)
    raw = path.read_bytes()
    assert raw.endswith(b"\n") and len(raw.splitlines()) == 5
    assert all(json.loads(line) for line in raw.splitlines())
    assert sorted(r.key for r in read_rollouts(path)) == [(f"s{i}", 0) for i in range(5)]
    with anyio.fail_after(10):
        again = await write_rollouts(path, scenario_list(5), plan)
    assert (again.resumed, again.written) == (5, 0)


def test_a_second_writer_is_refused_with_the_file_named(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    with RolloutSink(path):
        with pytest.raises(InputError) as info:
            RolloutSink(path).open()
        assert info.value.path == str(path)
        assert "another process" in info.value.problem
        with pytest.raises(InputError):
            RolloutSink(path, resume=False).open()
    # Released on close: the next writer gets in.
    with RolloutSink(path) as sink:
        assert sink.done == {}


CLI = "import sys; from convo_sim.cli import main; sys.exit(main())"


def test_a_second_convo_sim_run_on_the_same_file_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from convo_sim import RolloutSink\n"
            "with RolloutSink(sys.argv[1]):\n"
            "    print('locked', flush=True); time.sleep(60)",
            str(path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        second = subprocess.run(
            [sys.executable, "-c", CLI, "run", "--no-progress", "--out", str(path)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    finally:
        holder.kill()
        holder.communicate()
    assert second.returncode == 2
    assert second.stderr.startswith(f"convo-sim: error: {path}: ")
    assert "another process" in second.stderr and "Traceback" not in second.stderr
    assert len(second.stderr.splitlines()) == 1
    assert path.read_bytes() == b""
