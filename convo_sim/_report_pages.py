"""The HTML report at any size: one page up to a limit, paged transcripts beyond it.

Up to `inline_limit` rollouts the report is the single self-contained page
of `convo_sim._report_html`. Beyond it, every transcript would make that
page grow without bound (about 9 kB per calendar rollout), so the report
becomes a folder beside the page::

    report.html                  summary, charts, per-persona table, and an
                                 index of every rollout (paged, filterable)
    report_transcripts/
        page-00001.html          `page_size` transcripts each, as rendered
        page-00002.html          on the single page (escaped server-side)
        ...

The main page carries one compact JSON row per rollout (scenario, sample,
reward, termination, persona, turns, where its transcript is) in an inert
`<script type="application/json">` block; its script filters those rows
(the same URL fragment as the single page: `#failed=1&persona=terse`, plus
`page=N`) and shows one page of them at a time with `textContent`, so no
data ever becomes markup and the page stays fast at 100,000 rollouts.
Each row links to its transcript's page. Rollouts are read once, in file
order; only the small per-rollout facts the tables need are kept.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from itertools import chain, islice
from pathlib import Path
from typing import IO

from convo_sim._experiments import cell_stats
from convo_sim._records import Rollout
from convo_sim._report_assets import CSS, PAGED_SCRIPT
from convo_sim._report_html import (
    _e,
    _options,
    _persona,
    _rollout,
    page_top,
    write_html,
)

__all__ = ["INLINE_LIMIT", "PAGE_SIZE", "write_report"]

INLINE_LIMIT = 200
"""Most rollouts written as one self-contained page; more are paged. A calendar
rollout is about 10 kB of page: 1,000 of them made a 10 MB page that took
Chromium over ten seconds to open (benchmarks/report.py)."""

PAGE_SIZE = 100
"""Transcripts per transcript page (about 1 MB)."""

_HASH = base64.b64encode(hashlib.sha256(PAGED_SCRIPT.encode()).digest()).decode()
_MAIN_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    f"script-src 'sha256-{_HASH}'; base-uri 'none'; form-action 'none'"
)
_PAGE_CSP = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"


def write_report(
    rollouts: Iterable[Rollout],
    path: str | Path,
    *,
    title: str = "convo-sim report",
    source: str | None = None,
    threshold: float = 1.0,
    inline_limit: int = INLINE_LIMIT,
    page_size: int = PAGE_SIZE,
) -> Path:
    """Write the report of `rollouts` to `path`: one page, or a page and its transcript pages.

    Args:
        rollouts: the records, read once (an iterator over a file is fine);
            a repeated sample (same scenario and sample index) is shown once.
        path: the main page.
        title: the page title.
        source: where the records came from, shown under the title.
        threshold: the reward at or above which a rollout passes.
        inline_limit: most rollouts on one self-contained page.
        page_size: transcripts per transcript page when paged.

    Returns:
        The main page's path.

    Raises:
        OSError: a file cannot be written.
        ValueError: `inline_limit` or `page_size` is not positive.
    """
    if inline_limit < 1 or page_size < 1:
        raise ValueError("inline_limit and page_size must be positive")
    path = Path(path)
    stream = _unique(rollouts)
    head = list(islice(stream, inline_limit + 1))
    if len(head) <= inline_limit:
        return write_html(head, path, title=title, source=source, threshold=threshold)
    folder = path.with_name(f"{path.stem}_transcripts")
    folder.mkdir(exist_ok=True)
    light: list[Rollout] = []
    index: list[list[object]] = []
    page: IO[str] | None = None
    number = 0
    try:
        for i, rollout in enumerate(chain(head, stream)):
            if i % page_size == 0:
                if page is not None:
                    _end_page(page)
                number += 1
                page = _start_page(folder / _page_name(number), title, path.name, number)
            assert page is not None
            page.write(_rollout(rollout, i, threshold, expand=True))
            passed = rollout.reward is not None and rollout.reward >= threshold
            index.append(
                [
                    rollout.scenario_id,
                    rollout.sample_index,
                    rollout.reward,
                    int(passed),
                    rollout.termination.value,
                    _persona(rollout),
                    rollout.turns,
                    number,
                    i,
                ]
            )
            light.append(_light(rollout))
    finally:
        if page is not None:
            _end_page(page)
    html = _main_page(light, index, title, source, threshold, folder.name, number)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(html, encoding="utf-8")
    os.replace(tmp, path)
    return path


# What the tables read: the persona and assistant cells, the fidelity
# metrics, and the base scenario that pairs records across assistants.
_KEPT_METADATA = ("persona", "assistant", "fidelity", "base_scenario")


def _light(rollout: Rollout) -> Rollout:
    # The tables and charts need the numbers, not the dialogue: keeping
    # whole records held 4 GB at 100,000 rollouts (benchmarks/report.py).
    return rollout.model_copy(
        update={
            "responses_create_params": {},
            "turn_scores": (),
            "verdicts": (),
            "timings": (),
            "usage_by_role": {},
            "contiguity": None,
            "dialogue_id": "",
            "metadata": {k: rollout.metadata[k] for k in _KEPT_METADATA if k in rollout.metadata},
        }
    )


def _unique(rollouts: Iterable[Rollout]) -> Iterator[Rollout]:
    seen: set[tuple[str, int]] = set()
    for rollout in rollouts:
        if rollout.key not in seen:
            seen.add(rollout.key)
            yield rollout


def _page_name(number: int) -> str:
    return f"page-{number:05d}.html"


def _start_page(file: Path, title: str, main: str, number: int) -> IO[str]:
    page = file.open("w", encoding="utf-8")
    page.write(
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_e(_PAGE_CSP)}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}: transcripts, page {number}</title><style>{CSS}</style></head>"
        f'<body><header><h1>{_e(title)}</h1><p class="muted">transcripts, page {number} · '
        f'<a href="../{_e(main)}">back to the report</a></p></header><main>'
    )
    return page


def _end_page(page: IO[str]) -> None:
    page.write("</main></body></html>\n")
    page.close()


def _json_data(value: object) -> str:
    # Inside a <script type="application/json"> block, "</script" or "<!--"
    # in a scenario id would end the block: "<" never appears raw.
    return json.dumps(value, separators=(",", ":")).replace("<", "\\u003c")


def _main_page(
    light: list[Rollout],
    index: list[list[object]],
    title: str,
    source: str | None,
    threshold: float,
    folder: str,
    pages: int,
) -> str:
    cells = cell_stats(light, threshold=threshold)
    terminations = sorted({str(row[4]) for row in index})
    personas = sorted({str(row[5]) for row in index})
    controls = (
        '<div class="filters">'
        '<label><input type="checkbox" id="f-failed"> failed only</label>'
        '<label>termination <select id="f-termination"><option value="">all</option>'
        f"{_options(terminations)}</select></label>"
        '<label>persona <select id="f-persona"><option value="">all</option>'
        f"{_options(personas)}</select></label>"
        f'<span id="shown-count" class="muted">Showing {len(index)} of {len(index)} rollouts'
        "</span>"
        '<span class="pager"><button type="button" id="prev">previous</button> '
        '<span id="page-info" class="muted"></span> '
        '<button type="button" id="next">next</button></span></div>'
    )
    table = (
        f'<div class="scroll"><table class="grid" id="index" data-folder="{_e(folder)}">'
        "<thead><tr><th>reward</th><th>scenario</th><th>sample</th><th>persona</th>"
        "<th>termination</th><th>turns</th><th>transcript</th></tr></thead>"
        "<tbody></tbody></table></div>"
    )
    parts = [
        *page_top(light, cells, title=title, source=source, threshold=threshold, csp=_MAIN_CSP),
        '<section id="transcripts"><h2>Transcripts</h2>',
        f'<p class="muted">{len(index)} rollouts in file order; their transcripts are on '
        f"{pages} pages of their own, linked from each row.</p>",
        controls,
        table,
        "</section></main>",
        f'<script type="application/json" id="rollout-index">{_json_data(index)}</script>',
        f"<script>{PAGED_SCRIPT}</script></body></html>",
    ]
    return "\n".join(p for p in parts if p)
