"""The report's sections on who failed and on paired differences.

A failed rollout is the *simulator's* failure when its user made the goal
unreachable (a `critical` tag in `user_failure`), else the *assistant's*.
The report counts both, per persona, lists the user-failure tags, marks
each transcript with its user's failures, and, for an experiment with
several assistants, shows the paired differences (`convo_sim._paired`).
Every piece of data is escaped; no data becomes markup.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from html import escape
from typing import Literal

from convo_sim._experiments import NO_GROUP, failure_split
from convo_sim._paired import paired_comparisons
from convo_sim._records import Rollout
from convo_sim._user_failure import SEVERITIES, USER_FAILURE_KINDS, is_simulator_failure

__all__ = ["attribution_section", "blame", "paired_section", "user_failure_line"]

Blame = Literal["none", "assistant", "simulator"]


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _num(value: float | None, digits: int = 2) -> str:
    return "\u2013" if value is None else f"{value:.{digits}f}"


def blame(rollout: Rollout, threshold: float) -> Blame:
    """Who failed this rollout: `none` (it passed), `simulator` or `assistant`."""
    if rollout.reward is not None and rollout.reward >= threshold:
        return "none"
    return "simulator" if is_simulator_failure(rollout.user_failure) else "assistant"


def _persona(rollout: Rollout) -> str:
    value = rollout.metadata.get("persona")
    return NO_GROUP if value is None else str(value)


def attribution_section(rollouts: Sequence[Rollout], threshold: float) -> str:
    """Failures split by who failed, overall and per persona, and the user-failure tags."""
    total = failure_split(rollouts, threshold)
    failed = total["assistant_failures"] + total["simulator_failures"]
    unreviewed = len(rollouts) - total["reviewed"]
    by_persona: dict[str, list[Rollout]] = defaultdict(list)
    for rollout in rollouts:
        by_persona[_persona(rollout)].append(rollout)
    rows = []
    for name in sorted(by_persona):
        split = failure_split(by_persona[name], threshold)
        kinds = ", ".join(f"{k} {v}" for k, v in split["failure_kinds"].items()) or "\u2013"
        rows.append(
            f"<tr><td>{_e(name)}</td><td>{len(by_persona[name])}</td>"
            f"<td>{split['assistant_failures'] + split['simulator_failures']}</td>"
            f'<td class="assistant-failures">{split["assistant_failures"]}</td>'
            f'<td class="simulator-failures">{split["simulator_failures"]}</td>'
            f"<td>{split['user_failures']}</td><td>{_e(kinds)}</td></tr>"
        )
    tags: Counter[tuple[str, str]] = Counter(
        (tag.kind, tag.severity) for r in rollouts for tag in (r.user_failure or ())
    )
    tag_rows = "".join(
        f"<tr><td>{_e(kind)}</td>"
        + "".join(f"<td>{tags[kind, severity] or ''}</td>" for severity in SEVERITIES)
        + "</tr>"
        for kind in USER_FAILURE_KINDS
        if any(tags[kind, s] for s in SEVERITIES)
    )
    cards = (
        '<div class="cards">'
        f'<div class="card"><div class="label">Failed rollouts</div><div class="value">'
        f"{failed}</div></div>"
        f'<div class="card" id="assistant-failures"><div class="label">Assistant failures</div>'
        f'<div class="value">{total["assistant_failures"]}</div>'
        '<div class="extra">the user played its part</div></div>'
        f'<div class="card" id="simulator-failures"><div class="label">Simulator failures</div>'
        f'<div class="value">{total["simulator_failures"]}</div>'
        '<div class="extra">the user made its goal unreachable</div></div>'
        f'<div class="card"><div class="label">Users with any failure</div>'
        f'<div class="value">{total["user_failures"]}</div>'
        f'<div class="extra">{unreviewed} not reviewed</div></div></div>'
    )
    head = (
        "<tr><th>persona</th><th>n</th><th>failed</th><th>assistant failures</th>"
        "<th>simulator failures</th><th>users with a failure</th><th>user-failure kinds</th></tr>"
    )
    tag_table = (
        '<table class="grid"><tr><th>user failure</th>'
        + "".join(f"<th>{s}</th>" for s in SEVERITIES)
        + f"</tr>{tag_rows}</table>"
        if tag_rows
        else '<p class="muted">No simulated user did anything wrong.</p>'
    )
    return (
        '<section id="attribution"><h2>Who failed: assistant or simulator</h2>'
        '<p class="muted">A failed rollout is the simulator\'s when its user made its goal '
        "unreachable (a critical user-failure tag: it left early, withheld its goal, asked "
        "for something else); otherwise it is the assistant's.</p>"
        f'{cards}<div class="scroll"><table class="grid" id="attribution-table">{head}'
        f"{''.join(rows)}</table></div>{tag_table}</section>"
    )


def paired_section(rollouts: Sequence[Rollout]) -> str:
    """Paired differences between assistants, when the records hold two or more."""
    rows = paired_comparisons(rollouts)
    if not rows:
        return ""
    body = "".join(
        f"<tr><td>{_e(r.group.get('persona', ''))}</td><td>{_e(r.other)}</td>"
        f"<td>{r.pairs}</td><td>{_num(r.baseline_mean)}</td><td>{_num(r.other_mean)}</td>"
        f"<td>{_num(r.mean_difference)} "
        + (
            f'<span class="ci">[{r.difference_ci[0]:.2f}, {r.difference_ci[1]:.2f}]</span>'
            if r.difference_ci
            else ""
        )
        + f"</td><td>{r.wins}/{r.losses}/{r.ties}</td>"
        f"<td>{_num(r.p_value, 3)}</td><td>{_e(r.test)}</td></tr>"
        for r in rows
    )
    return (
        f'<section id="paired"><h2>Paired differences (against {_e(rows[0].baseline)})</h2>'
        '<p class="muted">Every assistant met the same simulated users (same scenario, '
        "persona and sample seed), so each pair's reward difference is free of the users' "
        "randomness. 95% paired-bootstrap intervals; two-sided sign-flip permutation test "
        "(exact sign test for binary rewards).</p>"
        '<div class="scroll"><table class="grid"><tr><th>persona</th><th>assistant</th>'
        "<th>pairs</th><th>baseline</th><th>assistant</th><th>difference</th>"
        f"<th>wins/losses/ties</th><th>p</th><th>test</th></tr>{body}</table></div></section>"
    )


def user_failure_line(rollout: Rollout) -> str:
    """One line naming what the user did wrong (nothing when it was never reviewed)."""
    failure = rollout.user_failure
    if failure is None:
        return ""
    if failure is False:
        return '<p class="user-failure none">simulated user: played its part</p>'
    parts = [
        f"{tag.kind} ({tag.severity}"
        + (f", turn {tag.turn}" if tag.turn is not None else "")
        + f"){': ' + tag.detail if tag.detail else ''}"
        for tag in failure
    ]
    return f'<p class="user-failure">simulated user failed: {_e(" · ".join(parts))}</p>'
