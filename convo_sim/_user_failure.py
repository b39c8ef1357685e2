"""User-failure attribution: what the simulated user did wrong in one dialogue.

A rollout's reward judges the assistant, but a simulated user can fail too:
leave before its goal is met, withhold what the assistant needs, ask for
something its goal does not hold. Then the assistant is not to blame.
Every record carries `user_failure`: `False` when the user played its part,
or the tags of what it did wrong (`None` only on records that were never
reviewed, such as files written before this field existed).

The tags follow the reviewer of the user side in tau2-bench:

| kind | what the user did |
| --- | --- |
| `premature_termination` | ended the dialogue while the assistant was getting things right and its goal was not met |
| `withheld_info` | never told the assistant part of its goal although it had the turns to |
| `revealed_info_early` | disclosed more, or sooner, than its persona allows |
| `contradicted_goal` | asked for something its goal contradicts and never took it back |
| `hallucination` | asked for something its goal does not hold at all |
| `inconsistent_behavior` | broke its own protocol (a stop signal mid-dialogue, repeated, or never sent once done) |

Severity says what the failure did to the outcome: `critical` made the
goal unreachable for any assistant (a failed rollout with a critical tag is
the simulator's failure, not the assistant's); `major` changed the dialogue
but not necessarily its outcome; `minor` is a deviation of style or pacing.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "SEVERITIES",
    "USER_FAILURE_KINDS",
    "Severity",
    "UserFailure",
    "UserFailureKind",
    "UserFailureTag",
    "is_simulator_failure",
    "user_failure_of",
]

UserFailureKind: TypeAlias = Literal[
    "premature_termination",
    "withheld_info",
    "revealed_info_early",
    "contradicted_goal",
    "hallucination",
    "inconsistent_behavior",
]
USER_FAILURE_KINDS: tuple[UserFailureKind, ...] = (
    "premature_termination",
    "withheld_info",
    "revealed_info_early",
    "contradicted_goal",
    "hallucination",
    "inconsistent_behavior",
)
"""Every kind of user failure, in the order reports list them."""

Severity: TypeAlias = Literal["minor", "major", "critical"]
SEVERITIES: tuple[Severity, ...] = ("minor", "major", "critical")
"""Severities, mildest first."""


class UserFailureTag(BaseModel):
    """One thing the simulated user did wrong.

    Attributes:
        kind: what it did (see the module docstring).
        severity: `minor`, `major` or `critical`.
        turn: the assistant turn the user's message opened (1-based), if
            one message is to blame.
        detail: what exactly, in words.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: UserFailureKind
    severity: Severity
    turn: int | None = Field(default=None, ge=0)
    detail: str = Field(default="", max_length=2000)


UserFailure: TypeAlias = Literal[False] | Annotated[tuple[UserFailureTag, ...], Field(min_length=1)]
"""A record's `user_failure`: False, or the (non-empty) tags."""


def user_failure_of(tags: Iterable[UserFailureTag]) -> UserFailure:
    """`False` for no tags, else the tags as a tuple, most severe first."""
    found = sorted(tags, key=lambda t: -SEVERITIES.index(t.severity))
    return tuple(found) if found else False


def is_simulator_failure(user_failure: UserFailure | None) -> bool:
    """Whether the user did something that made its goal unreachable (a `critical` tag)."""
    return bool(user_failure) and any(tag.severity == "critical" for tag in user_failure or ())
