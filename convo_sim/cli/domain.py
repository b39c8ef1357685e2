"""`--domain NAME`: which domain a command runs, shared by every sub-command.

Kept light (the registry is imported when a command runs), since
`convo-sim --help` imports every command's module.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from convo_sim.domains import Domain

__all__ = ["DEFAULT_DOMAIN", "add_domain_argument", "domain_name", "domain_of"]

DEFAULT_DOMAIN = "calendar"
"""The domain a command runs when `--domain` is not given."""


def add_domain_argument(parser: argparse.ArgumentParser) -> None:
    """Add `--domain NAME` (default `calendar`), checked when the command runs.

    The default is None, read as `calendar`, so that a scenario script's own
    `DOMAIN` can tell a flag that was given from one that was not.
    """
    parser.add_argument(
        "--domain",
        metavar="NAME",
        default=None,
        help="the task domain: its scenarios, actors and verifiers (default: calendar)",
    )


def domain_name(args: argparse.Namespace) -> str:
    """The name `--domain` gives (an empty one included), else `DEFAULT_DOMAIN`."""
    name = getattr(args, "domain", None)
    return DEFAULT_DOMAIN if name is None else str(name)


def domain_of(args: argparse.Namespace) -> Domain[Any]:
    """The domain `--domain` names.

    Raises:
        UnknownDomainError: no domain has that name (one line listing those
            that do, exit 2).
    """
    from convo_sim.domains import get

    return get(domain_name(args))
