"""One measured child process, shared by the suites that time whole commands."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import IO, Any


def timed(
    command: list[str], timeout: float, *, stdout: IO[Any] | int = subprocess.DEVNULL
) -> tuple[float, float, int]:
    """Wall seconds, peak RSS (MB, the process's own `ru_maxrss`) and exit code.

    `wait4` rather than `wait`: only it reports the child's resource usage.

    Raises:
        RuntimeError: the process ran past `timeout` seconds (it is killed).
    """
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=stdout, stderr=subprocess.DEVNULL)
    deadline = started + timeout
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        if time.perf_counter() > deadline:
            process.kill()
            process.wait()
            shown = " ".join([Path(command[0]).name, *command[1:3]])
            raise RuntimeError(f"{shown} took over {timeout:g} s")
        time.sleep(0.05)
    return time.perf_counter() - started, usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status)
