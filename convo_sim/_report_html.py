"""A self-contained HTML report of a rollout file.

One static page, no network: inline CSS, inline SVG charts and one small
inline script. It shows the summary metrics, the reward distribution and the
termination reasons, a per-persona (and per-assistant) comparison with
confidence intervals, failures split by who failed (the assistant or the
simulated user, `convo_sim._report_attribution`), paired differences
between assistants, and a transcript viewer with per-turn scores and
verifier reasons, filterable by outcome, termination reason, persona and
who failed.

Safety: transcripts are untrusted text (a model may write `<script>`). The
page is rendered on the server side with every piece of data escaped, so no
data ever becomes markup; the script only shows and hides elements and
reads attribute values. A Content-Security-Policy admits only that one
script (by its hash) and no network at all, as a second line of defence.

Filter state lives in the URL fragment (`#failed=1&termination=max_turns&
persona=terse&blame=simulator`), so a filtered view can be bookmarked or shared.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

from convo_sim._experiments import NO_GROUP, CellStats, cell_stats
from convo_sim._messages import Message, Transcript
from convo_sim._metrics import summarize
from convo_sim._records import Rollout
from convo_sim._report_assets import CSS, SCRIPT
from convo_sim._report_attribution import (
    attribution_section,
    blame,
    paired_section,
    user_failure_line,
)
from convo_sim._report_tables import json_tables
from convo_sim._results import TurnScore
from convo_sim._stats import bootstrap_interval, wilson_interval

__all__ = ["page_top", "render_html", "write_html"]

_SCRIPT_HASH = base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()
_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    f"script-src 'sha256-{_SCRIPT_HASH}'; base-uri 'none'; form-action 'none'"
)


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _num(value: float | None, digits: int = 2) -> str:
    return "\u2013" if value is None else f"{value:.{digits}f}"


def _ci(interval: tuple[float, float] | None, digits: int = 2) -> str:
    if interval is None:
        return ""
    return f'<span class="ci">[{interval[0]:.{digits}f}, {interval[1]:.{digits}f}]</span>'


def _persona(rollout: Rollout) -> str:
    value = rollout.metadata.get("persona")
    return NO_GROUP if value is None else str(value)


def _passed(rollout: Rollout, threshold: float) -> bool:
    return rollout.reward is not None and rollout.reward >= threshold


def render_html(
    rollouts: Sequence[Rollout],
    *,
    title: str = "convo-sim report",
    source: str | None = None,
    threshold: float = 1.0,
) -> str:
    """The report page for `rollouts`, as one HTML document.

    Args:
        rollouts: the records (from `read_rollouts` or an experiment).
        title: the page title.
        source: where the records came from, shown under the title.
        threshold: the reward at or above which a rollout passes.
    """
    cells = cell_stats(rollouts, threshold=threshold)
    parts = [
        *page_top(rollouts, cells, title=title, source=source, threshold=threshold, csp=_CSP),
        _viewer(rollouts, threshold),
        "</main>",
        f"<script>{SCRIPT}</script></body></html>",
    ]
    return "\n".join(p for p in parts if p)


def page_top(
    rollouts: Sequence[Rollout],
    cells: Sequence[CellStats],
    *,
    title: str,
    source: str | None,
    threshold: float,
    csp: str,
) -> list[str]:
    """A main page up to its transcripts: the head, the summary, the charts and the tables.

    The single page and the paged report's main page share it, so their
    sections cannot drift apart.
    """
    return [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_e(csp)}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body>",
        f"<header><h1>{_e(title)}</h1>",
        f'<p class="muted">{_e(source)}</p>' if source else "",
        "</header><main>",
        _summary(rollouts, threshold),
        '<section class="charts">',
        _chart_card("Reward distribution", _reward_histogram(rollouts)),
        _chart_card("Termination reasons", _termination_bars(rollouts)),
        _chart_card("Mean reward by persona (95% CI)", _persona_bars(cells)),
        "</section>",
        _comparison(cells),
        attribution_section(rollouts, threshold),
        paired_section(rollouts),
    ]


def write_html(
    rollouts: Sequence[Rollout],
    path: str | Path,
    *,
    title: str = "convo-sim report",
    source: str | None = None,
    threshold: float = 1.0,
) -> Path:
    """Write `render_html(...)` to `path` (UTF-8) and return the path."""
    path = Path(path)
    path.write_text(
        render_html(rollouts, title=title, source=source, threshold=threshold), encoding="utf-8"
    )
    return path


def _card(label: str, value: str, extra: str = "") -> str:
    return (
        f'<div class="card"><div class="label">{_e(label)}</div>'
        f'<div class="value">{value}</div><div class="extra">{extra}</div></div>'
    )


def _summary(rollouts: Sequence[Rollout], threshold: float) -> str:
    summary = summarize(rollouts, threshold=threshold)
    rewards = [r.reward for r in rollouts if r.reward is not None]
    passed = sum(x >= threshold for x in rewards)
    cards = [
        _card("Rollouts", str(summary.rollouts), f"{summary.scenarios} scenarios"),
        _card(
            "Mean reward",
            _num(summary.mean_reward),
            _ci(bootstrap_interval(rewards)) or f"{summary.scored} scored",
        ),
        _card(
            "Pass rate",
            _num(passed / len(rewards) if rewards else None),
            _ci(wilson_interval(passed, len(rewards)) if rewards else None),
        ),
    ]
    if summary.pass_hat_k:
        k = max(summary.pass_hat_k)
        cards.append(
            _card(
                f"pass^{k}", _num(summary.pass_hat_k[k]), f"pass@{k} {_num(summary.pass_at_k[k])}"
            )
        )
    cards.append(_card("Mean turns", _num(summary.mean_turns, 1), f"{summary.errors} errors"))
    fids = [
        r.metadata["fidelity"] for r in rollouts if isinstance(r.metadata.get("fidelity"), Mapping)
    ]
    if fids:
        coverage = [float(f["goal_coverage"]) for f in fids]
        cards.append(
            _card(
                "Goal coverage",
                _num(sum(coverage) / len(coverage)),
                _ci(bootstrap_interval(coverage)),
            )
        )
    return f'<section class="cards" id="summary">{"".join(cards)}</section>'


def _chart_card(title: str, svg: str) -> str:
    return f'<figure class="chart"><figcaption>{_e(title)}</figcaption>{svg}</figure>'


def _svg(width: int, height: int, body: str, label: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="{_e(label)}">{body}</svg>'
    )


def _reward_histogram(rollouts: Sequence[Rollout]) -> str:
    bins = [0] * 10
    unscored = 0
    for r in rollouts:
        if r.reward is None:
            unscored += 1
        else:
            bins[min(int(r.reward * 10), 9)] += 1
    top = max([*bins, 1])
    width, height, base = 360, 170, 140
    body = [f'<line x1="20" y1="{base}" x2="350" y2="{base}" class="axis"/>']
    for i, count in enumerate(bins):
        h = round(110 * count / top)
        x = 24 + i * 32
        cls = "bar pass" if i == 9 else "bar fail" if i == 0 else "bar"
        body.append(
            f'<rect x="{x}" y="{base - h}" width="26" height="{h}" class="{cls}">'
            f"<title>{i / 10:.1f}\u2013{(i + 1) / 10:.1f}: {count}</title></rect>"
        )
        if count:
            body.append(
                f'<text x="{x + 13}" y="{base - h - 4}" class="val" text-anchor="middle">'
                f"{count}</text>"
            )
    body.append(f'<text x="24" y="{base + 16}" class="tick" text-anchor="start">0</text>')
    body.append(f'<text x="184" y="{base + 16}" class="tick" text-anchor="middle">0.5</text>')
    body.append(f'<text x="344" y="{base + 16}" class="tick" text-anchor="end">1</text>')
    if unscored:
        body.append(
            f'<text x="350" y="14" class="tick" text-anchor="end">unscored: {unscored}</text>'
        )
    return _svg(width, height, "".join(body), "histogram of rewards")


def _hbars(
    items: Sequence[tuple[str, float, str, tuple[float, float] | None]], top: float, label: str
) -> str:
    """Horizontal bars: (label, value, text, interval) each, scaled to `top`."""
    if not items:
        return '<p class="muted">nothing to show</p>'
    row, left, span = 26, 124, 180
    body: list[str] = []
    for i, (name, value, text, interval) in enumerate(items):
        y = 6 + i * row
        w = round(span * value / top) if top else 0
        shown = name if len(name) <= 18 else name[:17] + "…"
        body.append(
            f'<text x="{left - 6}" y="{y + 15}" class="name" text-anchor="end">{_e(shown)}'
            f"<title>{_e(name)}</title></text>"
            f'<rect x="{left}" y="{y + 3}" width="{w}" height="16" class="bar">'
            f"<title>{_e(name)}: {_e(text)}</title></rect>"
        )
        if interval is not None and top:
            x1, x2 = (left + span * v / top for v in interval)
            body.append(
                f'<path d="M{x1:.1f} {y + 11}H{x2:.1f}M{x1:.1f} {y + 6}V{y + 16}'
                f'M{x2:.1f} {y + 6}V{y + 16}" class="whisker"/>'
            )
        body.append(
            f'<text x="{left + span + 8}" y="{y + 15}" class="val" text-anchor="start">'
            f"{_e(text)}</text>"
        )
    return _svg(360, row * len(items) + 10, "".join(body), label)


def _termination_bars(rollouts: Sequence[Rollout]) -> str:
    counts = Counter(r.termination.value for r in rollouts).most_common()
    top = max((c for _, c in counts), default=1)
    return _hbars([(name, c, str(c), None) for name, c in counts], top, "termination reasons")


def _persona_bars(cells: Sequence[CellStats]) -> str:
    # Name the assistant only when the cells hold more than one.
    several = len({c.group.get("assistant") for c in cells}) > 1
    items = [
        (
            c.group.get("persona", NO_GROUP)
            + (f" / {c.group.get('assistant', NO_GROUP)}" if several else ""),
            c.mean_reward,
            _num(c.mean_reward),
            c.reward_ci,
        )
        for c in cells
        if c.mean_reward is not None
    ]
    return _hbars(items, 1.0, "mean reward by persona")


def _cell(value: float | None, interval: tuple[float, float] | None) -> str:
    return f"<td>{_num(value)} {_ci(interval)}</td>"


def _comparison(cells: Sequence[CellStats]) -> str:
    max_k = max((max(c.pass_hat_k, default=0) for c in cells), default=0)
    head = (
        "<tr><th>persona</th><th>assistant</th><th>n</th><th>mean reward</th><th>pass rate</th>"
        f"<th>pass^{max_k}</th><th>turns</th><th>termination</th><th>goal coverage</th>"
        "<th>premature stops</th><th>stop ok</th><th>leakage</th></tr>"
    )
    rows = []
    for c in cells:
        rows.append(
            "<tr>"
            f"<td>{_e(c.group.get('persona', NO_GROUP))}</td><td>{_e(c.group.get('assistant', NO_GROUP))}</td>"
            f"<td>{c.rollouts}</td>"
            + _cell(c.mean_reward, c.reward_ci)
            + _cell(c.pass_rate, c.pass_ci)
            + f"<td>{_num(c.pass_hat_k.get(max_k))}</td>"
            + f"<td>{_num(c.mean_turns, 1)} {_ci(c.turns_ci, 1)}</td>"
            + f'<td class="endings">{_endings(c.terminations, c.rollouts)}</td>'
            + _cell(c.goal_coverage, c.coverage_ci)
            + _cell(c.premature_stop_rate, c.premature_stop_ci)
            + _cell(c.stop_ok_rate, c.stop_ok_ci)
            + _cell(c.leakage, c.leakage_ci)
            + "</tr>"
        )
    return (
        '<section id="comparison"><h2>Per-persona comparison</h2>'
        '<p class="muted">95% intervals: Wilson score for rates, percentile bootstrap '
        "(fixed seed) for means. Fidelity columns need an experiment's rollouts.</p>"
        f'<div class="scroll"><table class="grid">{head}{"".join(rows)}</table></div></section>'
    )


def _endings(counts: Mapping[str, int], total: int) -> str:
    # Most frequent first, each with its share: "max_turns 6 (100%)" tells at
    # a glance that a persona's failures are all turn-limit cut-offs.
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return "<br>".join(
        f'{_e(reason)} {count} <span class="ci">({100 * count / total:.0f}%)</span>'
        for reason, count in ordered
        if total
    )


def _options(values: Sequence[str]) -> str:
    return "".join(f'<option value="{_e(v)}">{_e(v)}</option>' for v in values)


def _viewer(rollouts: Sequence[Rollout], threshold: float) -> str:
    terminations = sorted({r.termination.value for r in rollouts})
    personas = sorted({_persona(r) for r in rollouts})
    controls = (
        '<div class="filters">'
        '<label><input type="checkbox" id="f-failed"> failed only</label>'
        '<label>termination <select id="f-termination"><option value="">all</option>'
        f"{_options(terminations)}</select></label>"
        '<label>persona <select id="f-persona"><option value="">all</option>'
        f"{_options(personas)}</select></label>"
        '<label>who failed <select id="f-blame"><option value="">all</option>'
        f"{_options(['assistant', 'simulator'])}</select></label>"
        f'<span id="shown-count" class="muted">Showing {len(rollouts)} of {len(rollouts)} rollouts</span>'
        "</div>"
    )
    # By scenario and sample, whatever order the run finished them in.
    ordered = sorted(rollouts, key=lambda r: r.key)
    items = [_rollout(r, i, threshold) for i, r in enumerate(ordered)]
    return (
        f'<section id="transcripts"><h2>Transcripts</h2>{controls}'
        f'<div id="rollouts">{"".join(items)}</div></section>'
    )


def _rollout(r: Rollout, index: int, threshold: float, *, expand: bool = False) -> str:
    passed = _passed(r, threshold)
    badge = f'<span class="badge {"pass" if passed else "fail"}">{_num(r.reward)}</span>'
    assistant = r.metadata.get("assistant")
    summary = (
        f"{badge} <code>{_e(r.scenario_id)}</code> #{r.sample_index} · persona "
        f"<b>{_e(_persona(r))}</b>"
        + (f" · {_e(assistant)}" if assistant is not None else "")
        + f" · {_e(r.termination.value)} · {r.turns} turns"
    )
    body = [_verdicts(r), _fidelity_line(r), user_failure_line(r)]
    if r.error is not None:
        body.append(
            f'<p class="error">{_e(r.error.source)} error in turn {r.error.turn}: '
            f"{_e(r.error.type)}: {_e(r.error.message)}</p>"
        )
    body.append(_messages(r))
    return (
        f'<details class="rollout" id="rollout-{index}" data-passed="{int(passed)}" '
        f'data-termination="{_e(r.termination.value)}" data-persona="{_e(_persona(r))}" '
        f'data-blame="{blame(r, threshold)}"'
        f"{' open' if index == 0 or expand else ''}><summary>{summary}</summary>"
        f'<div class="body">{"".join(body)}</div></details>'
    )


def _details(details: Mapping[str, Any]) -> str:
    if not details:
        return ""
    return (
        f'<code class="details">{_e(json.dumps(dict(details), sort_keys=True, default=str))}</code>'
    )


def _verdicts(r: Rollout) -> str:
    if not r.verdicts:
        return '<p class="muted">no final verdicts</p>'
    rows = "".join(
        f'<tr><td>{_e(v.verifier)}</td><td class="{"pass" if v.passed else "fail"}">{_num(v.reward)}</td>'
        f"<td>{_e(v.reason)}</td><td>{_details(v.details)}</td></tr>"
        for v in r.verdicts
    )
    return (
        '<table class="grid verdicts"><tr><th>verifier</th><th>reward</th><th>reason</th>'
        f"<th>details</th></tr>{rows}</table>"
    )


def _fidelity_line(r: Rollout) -> str:
    f = r.metadata.get("fidelity")
    if not isinstance(f, Mapping):
        return ""
    parts = [
        f"goal coverage {_num(f.get('goal_coverage'))}",
        "premature stop" if f.get("premature_stop") else "no premature stop",
        f"stop token: {f.get('stop_discipline')}",
    ]
    if f.get("leakage") is not None:
        parts.append(f"leakage {_num(f.get('leakage'))}")
    if f.get("missing"):
        parts.append("missing: " + ", ".join(str(m) for m in f["missing"]))
    return f'<p class="fidelity">user fidelity: {_e(" · ".join(parts))}</p>'


def _transcript(r: Rollout) -> Transcript | None:
    try:
        return r.transcript
    except (ValueError, KeyError, TypeError):
        return None


def _messages(r: Rollout) -> str:
    transcript = _transcript(r)
    if transcript is None:
        raw = json.dumps(r.responses_create_params.get("input"), default=str)
        return f'<p class="error">unreadable transcript</p><pre>{_e(raw)}</pre>'
    scores: dict[int, list[TurnScore]] = {}
    for s in r.turn_scores:
        scores.setdefault(s.turn, []).append(s)
    # A message whose tool calls were answered by results is a step within
    # a turn; the turn is the answer after it. Replies before the last
    # `turns` answers came with the prefix.
    answered = {m.tool_call_id for m in transcript if m.role == "tool"}

    def is_step(m: Message) -> bool:
        return any(c.id in answered for c in m.tool_calls)

    answers = sum(1 for m in transcript if m.role == "assistant" and not is_step(m))
    prefix_replies = answers - r.turns
    out: list[str] = []
    seen = 0
    for message in transcript:
        label: str = message.role
        turn_scores: list[TurnScore] = []
        if message.role == "assistant":
            step = is_step(message)
            turn = seen + 1 - prefix_replies
            if not step:
                seen += 1
            where = f"turn {turn}" if turn > 0 else "prefix"
            label = f"assistant · {where}" + (" · tool step" if step else "")
            turn_scores = scores.get(turn, []) if turn > 0 and not step else []
        elif message.role == "tool":
            label = f"tool result · {message.tool_call_id or ''}".rstrip(" ·")
        out.append(_message(message, label, turn_scores))
    return f'<ol class="messages">{"".join(out)}</ol>'


def _message(message: Message, label: str, turn_scores: Sequence[TurnScore]) -> str:
    # A system prompt's JSON is an example, not a state worth a table.
    tables = "" if message.role in ("system", "developer") else json_tables(message.text)
    calls = "".join(
        f'<div class="call">→ {_e(c.name)}({_e(c.arguments)})</div>' for c in message.tool_calls
    )
    scored = "".join(
        f'<li><span class="{"pass" if s.score >= 1 else "fail"}">{_num(s.score)}</span> '
        f"{_e(s.verifier)}: {_e(s.reason)} {_details(s.details)}</li>"
        for s in turn_scores
    )
    return (
        f'<li class="msg {_e(message.role)}"><div class="role">{_e(label)}</div>'
        f'<div class="text">{_e(message.text)}</div>{tables}{calls}'
        + (f'<ul class="scores">{scored}</ul>' if scored else "")
        + "</li>"
    )
