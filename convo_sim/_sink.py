"""Streaming JSONL output that survives crashes, and resuming from it.

A rollouts file holds one `Rollout` per line. `RolloutSink` appends each
record as one complete line with a single `write()` on an `O_APPEND`
descriptor, so a crash, Ctrl-C or `kill -9` can leave at most a torn last
line, never a torn line in the middle. Opening the sink again scans the
file, cuts such a torn last line off and reports which
`(scenario_id, sample_index)` keys are done; `write_rollouts` then runs
only the missing ones. Re-running the same command therefore continues
where it stopped: no duplicate, no missing record, no torn line.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

import anyio
import pydantic

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

from convo_sim._errors import InputError
from convo_sim._logging import get_logger
from convo_sim._records import Rollout, RolloutKey
from convo_sim._rollouts import Backend, RolloutPlan, S, open_plan, plan_items

if TYPE_CHECKING:
    from convo_sim._progress import Progress

__all__ = ["RolloutSink", "WriteStats", "iter_rollouts", "read_rollouts", "write_rollouts"]

_log = get_logger("convo_sim.sink")


def _lines(path: Path) -> Iterator[tuple[int, int, bytes, bool]]:
    """`(line_number, byte_offset, line, is_last)` for each line of a file."""
    size = path.stat().st_size
    offset = 0
    with path.open("rb") as f:
        for number, line in enumerate(f, start=1):
            end = offset + len(line)
            yield number, offset, line, end == size
            offset = end


def _parse(path: Path, number: int, line: bytes) -> Rollout:
    try:
        return Rollout.model_validate_json(line)
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "record"
        raise InputError(
            f"not a rollout record ({where}: {first['msg']})", path=path, line=number
        ) from None


@dataclass(slots=True)
class _End:
    """How a rollouts file ends, and how to repair it before appending.

    Attributes:
        cut: the offset to cut a torn last line at, if there is one.
        unterminated: the last line is a whole record without its newline.
    """

    cut: int | None = None
    unterminated: bool = False


def _records(path: Path, end: _End | None = None) -> Iterator[Rollout]:
    """Every record of the file, in order, one at a time; a torn last line is left out.

    `end`, when given, learns how the last line ends.

    Raises:
        InputError: a complete line is not a rollout record.
    """
    for number, offset, line, is_last in _lines(path):
        if not line.strip():
            continue
        if is_last and not line.endswith(b"\n"):
            # Our writer always ends a record with its newline in the same
            # write, so a last line without one was cut short; or only its
            # newline went missing (`truncate -s -1`), and the record stays.
            try:
                record = Rollout.model_validate_json(line)
            except pydantic.ValidationError:
                if end is not None:
                    end.cut = offset
                return
            if end is not None:
                end.unterminated = True
            yield record
            return
        # A complete line (newline and all) that is not a record is not a
        # torn write: it is damage or a wrong file, and resuming over it
        # would hide that.
        yield _parse(path, number, line)


def iter_rollouts(path: str | Path) -> Iterator[Rollout]:
    """Read a rollouts file back one record at a time, exactly as it was written.

    What `read_rollouts` reads, without holding the file's records: for
    summaries of files of any size (`summarize(iter_rollouts(path))`). A
    torn last line is ignored.

    Raises:
        InputError: the file is missing, or a line is not a rollout record.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("no such rollouts file", path=path)
    return _records(path)


def read_rollouts(path: str | Path) -> list[Rollout]:
    """Read a rollouts file back, exactly as it was written.

    A torn last line (a record cut short by a crash while the file was being
    written) is ignored.

    Raises:
        InputError: the file is missing, or a line is not a rollout record.
    """
    return list(iter_rollouts(path))


def _lock(fd: int, path: Path) -> None:
    """Take the file's exclusive writer lock, or say who holds it.

    An advisory `flock` on the open file: every `RolloutSink` takes it, so
    two `convo-sim run` on one `--out` cannot interleave (and duplicate)
    records; readers (`report`, `read_rollouts`) need no lock. The lock
    goes with the descriptor, so a killed writer never leaves it behind.

    Raises:
        InputError: another process, or another sink in this one, holds it.
    """
    if fcntl is None:  # pragma: no cover - not on POSIX: no advisory locks to take
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise InputError(
            "another process is writing this file (a second convo-sim run?); "
            "wait for it to finish or choose another output file",
            path=path,
        ) from None


class RolloutSink:
    """Appends rollouts to a JSONL file, one complete line per record.

    Use as a context manager, or call `open()` and `close()`.

    Args:
        path: the rollouts file; created (with its folder) if missing.
        resume: keep the records already there (and cut a torn last line);
            False starts the file over.
        fsync: also `fsync` after every record, so a power cut loses none
            (a crash or kill loses none even without it).

    Attributes:
        done: `(scenario_id, sample_index) -> seed` of every record in the
            file when `open()` read it (what a resumed run skips); records
            written afterwards are not added, so a long run keeps no
            bookkeeping per record it writes.
        written: records written since `open()`.
    """

    def __init__(self, path: str | Path, *, resume: bool = True, fsync: bool = False) -> None:
        self.path = Path(path)
        self.resume = resume
        self.fsync = fsync
        self.done: dict[RolloutKey, int] = {}
        self.written = 0
        self._fd: int | None = None

    def open(self) -> set[RolloutKey]:
        """Lock the file, scan it, repair its last line, and get ready to append.

        A torn last line is cut off; a whole last record that lost its
        newline gets it back, so the next record starts a line of its own.

        Returns:
            The keys of the records already in the file.

        Raises:
            InputError: another process (or another sink) is writing the
                file, or a complete line is not a rollout record.
            OSError: the file or its folder cannot be created or opened.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        done: dict[RolloutKey, int] = {}
        records = 0
        try:
            _lock(fd, self.path)
            if not self.resume:
                os.ftruncate(fd, 0)
            end = _End()
            if self.resume:
                # One record at a time: the file may hold millions.
                for record in _records(self.path, end):
                    done[record.key] = record.seed
                    records += 1
            if end.cut is not None:
                os.ftruncate(fd, end.cut)
                _log.warning("sink.torn_line_removed", path=str(self.path), offset=end.cut)
            elif end.unterminated:
                os.write(fd, b"\n")
                _log.warning("sink.newline_restored", path=str(self.path))
        except BaseException:
            os.close(fd)  # also releases the lock
            raise
        self.done = done
        self.written = 0
        if len(done) < records:
            _log.warning("sink.duplicates", path=str(self.path), duplicates=records - len(done))
        self._fd = fd
        return set(done)

    def write(self, rollout: Rollout) -> None:
        """Append one record as one line and flush it to the OS.

        Raises:
            RuntimeError: the sink is not open.
            OSError: the write failed (disk full, ...).
        """
        if self._fd is None:
            raise RuntimeError("the sink is not open; call open() or use it as a context manager")
        # A record that cannot be written as JSON is written escaped, as an
        # error of its dialogue, rather than stopping the run.
        data = memoryview(rollout.to_json_line())
        # One write() almost always takes the whole record; the loop covers a
        # short write, and a kill in between leaves only a torn last line.
        while data:
            written = os.write(self._fd, data)
            data = data[written:]
        if self.fsync:
            os.fsync(self._fd)
        self.written += 1

    def close(self) -> None:
        """Close the file and release its lock (idempotent)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RolloutSink:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@dataclass(frozen=True, slots=True)
class WriteStats:
    """What `write_rollouts` did.

    Attributes:
        total: samples in the run (scenarios x samples per scenario).
        resumed: of those, already in the file when the run started.
        written: records written by this run.
    """

    total: int
    resumed: int
    written: int


def _check_seeds(
    path: Path, done: dict[RolloutKey, int], scenarios: Iterable[S], plan: RolloutPlan[S]
) -> None:
    by_id = {s.id: s for s in scenarios}
    for (scenario_id, index), recorded in done.items():
        scenario = by_id.get(scenario_id)
        if scenario is not None and recorded != plan.seed_for(scenario, index):
            raise InputError(
                f"holds rollouts made with another seed (first: {scenario_id!r} sample {index}); "
                "use the same --seed, another output file, or --no-resume to start over",
                path=path,
            )


async def write_rollouts(
    path: str | Path,
    scenarios: Iterable[S],
    plan: RolloutPlan[S],
    *,
    samples_per_scenario: int = 1,
    resume: bool = True,
    fsync: bool = False,
    backend: Backend[S] | None = None,
    progress: Progress | None = None,
) -> WriteStats:
    """Run the plan and append every rollout to `path`, resuming by default.

    Records already in the file are kept and their samples skipped, so the
    same call after a crash finishes the run.

    Args:
        path: the rollouts file.
        scenarios: the scenarios (ids must be unique).
        plan: factories, limits and seed (see `open_rollouts`).
        samples_per_scenario: dialogues per scenario.
        resume: keep and skip what the file holds; False starts it over.
        fsync: fsync after every record.
        backend: where to run; default this process.
        progress: shown while the run goes on.

    Returns:
        How many samples the run has, were resumed and were written.

    Raises:
        InputError: the file is not a rollouts file, or was written with
            another seed; two scenarios share an id.
        RolloutError: a factory raised for some sample.
        OSError: the file cannot be opened or written.
    """
    scenario_list = list(scenarios)
    sink = RolloutSink(path, resume=resume, fsync=fsync)
    # Scanning a large file is blocking work; nothing else runs yet.
    done = await anyio.to_thread.run_sync(sink.open)
    written = 0
    try:
        _check_seeds(sink.path, sink.done, scenario_list, plan)
        items = plan_items(scenario_list, samples_per_scenario, done)
        total = len(scenario_list) * samples_per_scenario
        resumed = total - len(items)
        _log.info("rollouts.resumed", path=str(sink.path), total=total, resumed=resumed)
        if progress is not None:
            progress.start(total, already_done=resumed)
        async with open_plan(items, plan, backend=backend) as rollouts:
            async for rollout in rollouts:
                # A write is one small syscall; a thread hop per record would
                # cost more than it saves.
                sink.write(rollout)
                written += 1
                if progress is not None:
                    progress.update(rollout)
    finally:
        sink.close()
        if progress is not None:
            progress.close()
    return WriteStats(total=total, resumed=resumed, written=written)
