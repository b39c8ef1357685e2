"""The HTML report past one page: paged transcripts, opened in headless Chromium.

1,500 rollouts (real experiment records, repeated under new sample indices)
make a paged report with the default limits; the main page's index is
filtered and paged from the URL fragment, each row links to its
transcript's page, and hostile text stays text. Chromium as in
tests/test_report_html.py (skipped loudly without it, mandatory in CI).
"""

from __future__ import annotations

import re
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from convo_sim import Message, Transcript
from convo_sim._records import Rollout
from convo_sim._report_html import render_html
from convo_sim._report_pages import INLINE_LIMIT, PAGE_SIZE, write_report
from convo_sim._report_tables import json_tables
from convo_sim._sink import RolloutSink
from convo_sim.cli import main
from convo_sim.cli.experiment import run_experiment
from convo_sim.domains.calendar import generate_scenarios
from tests.browser import chromium_path
from tests.test_report_html import ATTACK, Dom, attack_rollout

COUNT = 1500


def chromium(profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            chromium_path(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            f"--user-data-dir={profile}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


class IndexDom(Dom):
    def __init__(self, html: str) -> None:
        self.page_info = ""
        self._in_info = False
        super().__init__(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        super().handle_starttag(tag, attrs)
        self._in_info = dict(attrs).get("id") == "page-info"

    def handle_data(self, data: str) -> None:
        super().handle_data(data)
        if self._in_info:
            self.page_info += data

    def rows(self) -> list[dict[str, str | None]]:
        return [a for t, a in self.tags if t == "tr" and a.get("class") == "indexed"]

    def links(self) -> list[str]:
        return [str(a["href"]) for t, a in self.tags if t == "a" and "href" in a]


def many(records: list[Rollout], count: int) -> Iterator[Rollout]:
    for i in range(count):
        base = records[i % len(records)]
        yield base.model_copy(update={"sample_index": i})


@pytest.fixture(scope="module")
def paged(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Rollout]]:
    out = tmp_path_factory.mktemp("paged")
    done = anyio.run(
        lambda: run_experiment(
            generate_scenarios(2, seed=0),
            personas=["cooperative", "impatient"],
            seeds=2,
            out_dir=out,
            html=False,
        )
    )
    # Every persona is winnable by the solver, so the failures the filters
    # look for are made here: half of the impatient persona's copies.
    records = [
        r.model_copy(update={"reward": 0.0})
        if r.metadata.get("persona") == "impatient" and r.sample_index % 2 == 0
        else r
        for r in many(done.rollouts, COUNT - 1)
    ]
    records.append(attack_rollout())
    with RolloutSink(out / "big.jsonl", resume=False) as sink:
        for record in records:
            sink.write(record)
    # Made as users make it: `convo-sim report FILE --html OUT`.
    assert main(["report", str(out / "big.jsonl"), "--html", str(out / "report.html")]) == 0
    return out / "report.html", records


def test_past_the_limit_the_transcripts_move_to_pages_of_their_own(
    paged: tuple[Path, list[Rollout]],
) -> None:
    page, _records = paged
    assert COUNT > INLINE_LIMIT
    pages = sorted((page.parent / "report_transcripts").glob("page-*.html"))
    assert len(pages) == -(-COUNT // PAGE_SIZE)
    shown = sum(p.read_text().count('<details class="rollout"') for p in pages)
    assert shown == COUNT
    # The main page holds no transcript: it stays small however many there are.
    assert '<details class="rollout"' not in page.read_text()
    assert page.stat().st_size < 400_000
    # Every link the index makes points at a page that holds that rollout.
    html = pages[3].read_text()
    assert f'id="rollout-{3 * PAGE_SIZE}"' in html and f'id="rollout-{4 * PAGE_SIZE - 1}"' in html


@pytest.mark.browser
def test_the_index_is_paged_and_filtered_in_chromium(
    paged: tuple[Path, list[Rollout]], tmp_path: Path
) -> None:
    page, records = paged
    failed = [r for r in records if not (r.reward is not None and r.reward >= 1.0)]
    impatient_failed = [r for r in failed if r.metadata.get("persona") == "impatient"]
    assert 0 < len(impatient_failed) < len(failed) < len(records)

    first = IndexDom(chromium(tmp_path / "a", "--dump-dom", page.as_uri()).stdout)
    assert first.count == f"Showing {COUNT} of {COUNT} rollouts"
    assert first.page_info.strip() == f"page 1 of {-(-COUNT // 100)}"
    assert len(first.rows()) == 100

    url = page.as_uri() + "#failed=1&persona=impatient&page=2"
    second = IndexDom(chromium(tmp_path / "b", "--dump-dom", url).stdout)
    assert second.count == f"Showing {len(impatient_failed)} of {COUNT} rollouts"
    rows = second.rows()
    assert rows and len(rows) == min(100, len(impatient_failed) - 100)
    assert all(r["data-passed"] == "0" and r["data-persona"] == "impatient" for r in rows)
    for href in second.links():
        target, _, anchor = href.partition("#")
        assert (page.parent / target).is_file() and f'id="{anchor}"' in (
            page.parent / target
        ).read_text()


@pytest.mark.browser
def test_hostile_text_stays_text_on_the_paged_pages(
    paged: tuple[Path, list[Rollout]], tmp_path: Path
) -> None:
    page, _ = paged
    main_page = IndexDom(chromium(tmp_path / "a", "--dump-dom", page.as_uri() + "#failed=1").stdout)
    tags = [t for t, _ in main_page.tags]
    assert "img" not in tags and "marquee" not in tags
    assert main_page.title == "convo-sim report"
    body = next(a for t, a in main_page.tags if t == "body")
    assert "data-pwned" not in body
    last = sorted((page.parent / "report_transcripts").glob("page-*.html"))[-1]
    transcript = Dom(chromium(tmp_path / "b", "--dump-dom", last.as_uri()).stdout)
    assert "img" not in [t for t, _ in transcript.tags] and ATTACK in "".join(transcript.text)
    assert all("open" in a for a in transcript.rollouts())


@pytest.mark.browser
@pytest.mark.timeout(90)
def test_screenshots_of_the_paged_report_are_real_pictures(
    paged: tuple[Path, list[Rollout]], tmp_path: Path
) -> None:
    page, _ = paged
    first = sorted((page.parent / "report_transcripts").glob("page-*.html"))[0]
    for name, url in (("index", page.as_uri() + "#failed=1"), ("page", first.as_uri())):
        shot = tmp_path / f"{name}.png"
        chromium(
            tmp_path / name,
            f"--screenshot={shot}",
            "--window-size=1280,2000",
            "--hide-scrollbars",
            url,
        )
        data = shot.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        assert struct.unpack(">II", data[16:24]) == (1280, 2000)
        assert len(data) > 50_000, name  # a blank page compresses to a few kB


def test_termination_per_persona_calendar_tables_and_chart_sizes(
    paged: tuple[Path, list[Rollout]],
) -> None:
    _, records = paged
    html = render_html(records[:40])
    comparison = html[html.index('id="comparison"') : html.index('id="transcripts"')]
    assert "<th>termination</th>" in comparison
    endings = re.findall(r'<td class="endings">(.*?)</td>', comparison)
    assert endings and all(re.match(r"[a-z_]+ \d+", e) for e in endings)
    # Charts are drawn at their own size, not stretched to the card.
    for view_w, view_h, w, h in re.findall(
        r'viewBox="0 0 (\d+) (\d+)" width="(\d+)" height="(\d+)"', html
    ):
        assert (view_w, view_h) == (w, h)
    assert 'width="100%"' not in html
    # The calendar an assistant shows is a table too.
    assert '<table class="grid records"><tr><th>event_id</th><th>event_name</th>' in html


def test_json_tables_take_records_only_and_escape_them() -> None:
    text = 'Here: [{"event_id": 0, "event_name": "<b>x</b>", "start_time": "10:00"}] ok [1, 2]'
    table = json_tables(text)
    assert table.count("<table") == 1 and "&lt;b&gt;x&lt;/b&gt;" in table and "<b>" not in table
    assert json_tables("no list [here") == json_tables("[1, 2, 3]") == ""
    assert json_tables('[{"a": {"nested": 1}}]') == ""
    message = Message(role="assistant", content=text)
    assert Transcript(messages=(message,))  # a plain message, rendered through render_html above


def test_a_small_file_is_still_one_self_contained_page(tmp_path: Path) -> None:
    out = write_report([attack_rollout()], tmp_path / "one.html")
    assert out == tmp_path / "one.html"
    assert not (tmp_path / "one_transcripts").exists()
    assert '<details class="rollout"' in out.read_text()


def test_past_the_bootstrap_limit_the_interval_is_the_normal_one() -> None:
    import random

    from convo_sim._stats import BOOTSTRAP_LIMIT, bootstrap_interval

    rng = random.Random(3)
    values = [rng.choice([0.0, 0.5, 1.0]) for _ in range(BOOTSTRAP_LIMIT)]
    resampled = bootstrap_interval(values)
    normal = bootstrap_interval([*values, sum(values) / len(values)])  # one more: normal
    assert resampled is not None and normal is not None
    assert abs(resampled[0] - normal[0]) < 0.01 and abs(resampled[1] - normal[1]) < 0.01
    assert normal[0] < sum(values) / len(values) < normal[1]
