"""The `convo-sim` command line.

Each sub-command lives in its own module with two functions:
`add_parser(subparsers)` and `run(args) -> int`. Bad input (`InputError`)
becomes one line on standard error and exit code 2, never a traceback; any
other error convo-sim raises on purpose (`ConvoSimError`: a factory that
failed, say) one line and exit code 1. A reader that goes away
(`convo-sim report FILE | head -1`) ends the command quietly with 141, as
a shell's SIGPIPE would.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from types import ModuleType

from convo_sim._errors import ConvoSimError, InputError
from convo_sim._logging import configure_logging

__all__ = ["main"]


def _commands() -> list[ModuleType]:
    # Imported lazily so that `convo-sim --help` stays fast and a broken
    # optional command cannot break the others.
    from convo_sim.cli import experiment as experiment_cmd
    from convo_sim.cli import export as export_cmd
    from convo_sim.cli import generate as generate_cmd
    from convo_sim.cli import report as report_cmd
    from convo_sim.cli import run as run_cmd
    from convo_sim.cli import serve as serve_cmd
    from convo_sim.cli import verify as verify_cmd

    return [
        run_cmd,
        generate_cmd,
        report_cmd,
        verify_cmd,
        serve_cmd,
        experiment_cmd,
        export_cmd,
    ]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every sub-command registered."""
    parser = argparse.ArgumentParser(
        prog="convo-sim", description="Simulated multi-turn dialogues: run, score, report."
    )
    parser.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        default="warning",
        help="log events at or above this level to standard error (default: warning)",
    )
    parser.add_argument("--log-json", action="store_true", help="write log events as JSON lines")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _commands():
        module.add_parser(sub)
    for command in sub.choices.values():
        # Also after the command (`convo-sim run --log-level info`); SUPPRESS
        # keeps a value given before it when none is given after.
        command.add_argument(
            "--log-level",
            choices=["debug", "info", "warning", "error"],
            default=argparse.SUPPRESS,
            help="log events at or above this level to standard error (default: warning)",
        )
        command.add_argument(
            "--log-json",
            action="store_true",
            default=argparse.SUPPRESS,
            help="write log events as JSON lines",
        )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `convo-sim` script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    configure_logging(args.log_level, json=args.log_json)
    try:
        code: int = args.handler(args)
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
    except InputError as exc:
        print(f"convo-sim: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except ConvoSimError as exc:
        print(f"convo-sim: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("convo-sim: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        _drop_stdout()
        return 141
    return code


def _one_line(exc: BaseException) -> str:
    # A message quoting file content could hold a newline or a character
    # the terminal cannot show; the error stays one readable line.
    text = str(exc).replace("\r", "\\r").replace("\n", "\\n")
    return text.encode("utf-8", "backslashreplace").decode()


def _drop_stdout() -> None:
    """Point standard output at /dev/null, so the exit-time flush finds no closed pipe."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # no real descriptor behind sys.stdout (captured, say)
        pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
