"""The HTML report, opened in a real headless Chromium.

Why the Chromium command line and not Playwright: `--dump-dom` gives the DOM
after the page's script ran, `--screenshot` a PNG, and the filters are
driven through the URL fragment (`#failed=1&persona=...`), which is the
page's own bookmarkable state. That covers what this test needs with no
extra Python dependency and no browser download.

Chromium is a system package (`/usr/bin/chromium` on Debian). When it is
missing these tests are skipped and the run's summary says so loudly;
`.ci/run` installs it and sets `CONVO_SIM_REQUIRE_BROWSER=1`, which makes
them fail instead (tests/browser.py). Deselect them with `-m "not browser"`.
"""

from __future__ import annotations

import json
import struct
import subprocess
from collections.abc import Iterator
from html import unescape
from html.parser import HTMLParser
from pathlib import Path

import pytest

from convo_sim import (
    DEFAULT_STOP_TOKEN,
    Message,
    TerminationReason,
    Transcript,
    TurnScore,
    Verdict,
    View,
    generate_rollouts_sync,
)
from convo_sim._actors import Actor
from convo_sim._records import Rollout
from convo_sim._report_html import render_html
from convo_sim._sink import RolloutSink, read_rollouts
from convo_sim.agents import FunctionAssistant
from convo_sim.cli import main
from convo_sim.cli.experiment import run_experiment
from convo_sim.domains import get
from convo_sim.domains.calendar import generate_scenarios as generate_calendar_scenarios
from convo_sim.users import FunctionUser
from tests.browser import chromium_path

pytestmark = pytest.mark.browser

ATTACK = (
    "<script>document.title='pwned'</script>"
    "<img src=x onerror=\"document.body.setAttribute('data-pwned','1')\">"
)


def chromium_args(profile: Path) -> list[str]:
    return [
        chromium_path(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
    ]


class Dom(HTMLParser):
    """The parts of a dumped DOM the assertions look at."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self._in_count = False
        self.count = ""
        self.title = ""
        self._in_title = False
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_count = dict(attrs).get("id") == "shown-count"
        # The page's own title; SVG charts hold <title> tooltips too.
        self._in_title = tag == "title" and not self.title

    def handle_endtag(self, tag: str) -> None:
        self._in_count = self._in_title = False

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._in_count:
            self.count += data
        if self._in_title:
            self.title += data

    def rollouts(self) -> list[dict[str, str | None]]:
        return [a for t, a in self.tags if t == "details" and "rollout" in (a.get("class") or "")]

    def visible(self) -> list[dict[str, str | None]]:
        return [a for a in self.rollouts() if "hidden" not in a]


def attack_rollout() -> Rollout:
    transcript = Transcript(
        messages=(
            Message(role="user", content=f"Add lunch (event id: 0), 60 minutes. {ATTACK}"),
            Message(role="assistant", content=f"Sure. {ATTACK}"),
            Message(role="user", content="###STOP###"),
        )
    )
    return Rollout(
        responses_create_params={"input": transcript.to_responses_input()},
        reward=0.0,
        scenario_id=f"attack {ATTACK}",
        sample_index=0,
        seed=1,
        termination=TerminationReason.USER_STOP,
        terminated_by="stop_token",
        turns=1,
        turn_scores=(TurnScore(score=0.0, reason=ATTACK, verifier="evil", turn=1),),
        verdicts=(Verdict(reward=0.0, reason=ATTACK, details={"x": ATTACK}, verifier=ATTACK),),
        metadata={"persona": "mallory\"'><marquee>", "assistant": ATTACK},
    )


def careless(scenario: object, seed: int) -> Actor:
    """An assistant that never shows an event: the impatient user leaves it."""
    return FunctionAssistant(lambda view: "Here is your calendar.\n\n[]")


def quitter(scenario: object, seed: int) -> Actor:
    """A user that asks for its first event, then leaves although all is well."""
    calendar = get("calendar")
    real = calendar.user(scenario, seed)

    async def say(view: View) -> str:
        if view.last is None:
            return (await real.respond(view)).text
        return f"Never mind. {DEFAULT_STOP_TOKEN}"

    return FunctionUser(say)


def failures(personas: tuple[str, ...], **factories: object) -> list[Rollout]:
    """Rollouts of two generated scenarios per persona with some factories replaced."""
    calendar = get("calendar")
    scenarios = [
        s.model_copy(update={"id": f"{s.id}/{p}/{next(iter(factories))}", "persona": p})
        for s in generate_calendar_scenarios(2, seed=3)
        for p in personas
    ]
    return generate_rollouts_sync(scenarios, calendar.plan(**factories))


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, list[Rollout]]]:
    import anyio

    out = tmp_path_factory.mktemp("report")
    anyio.run(
        lambda: run_experiment(
            generate_calendar_scenarios(2, seed=0),
            personas=["cooperative", "impatient"],
            seeds=2,
            out_dir=out,
            html=False,
        )
    )
    with RolloutSink(out / "rollouts.jsonl") as sink:
        # The assistant's failures, and the simulator's.
        for rollout in failures(("impatient",), assistant=careless):
            sink.write(rollout)
        for rollout in failures(("cooperative", "terse"), user=quitter):
            sink.write(rollout)
        sink.write(attack_rollout())
    records = read_rollouts(out / "rollouts.jsonl")
    # The page is made the way users make it: `convo-sim report FILE --html OUT`.
    assert main(["report", str(out / "rollouts.jsonl"), "--html", str(out / "report.html")]) == 0
    yield out / "report.html", records


def dump(page: Path, fragment: str, profile: Path) -> Dom:
    url = page.resolve().as_uri() + fragment
    done = subprocess.run(
        [*chromium_args(profile), "--dump-dom", url],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return Dom(done.stdout)


@pytest.mark.timeout(90)
def test_filters_from_the_url_fragment(report: tuple[Path, list[Rollout]], tmp_path: Path) -> None:
    page, records = report
    failed = [r for r in records if not (r.reward is not None and r.reward >= 1.0)]
    impatient = [r for r in records if r.metadata.get("persona") == "impatient"]
    assert 0 < len(failed) < len(records) and impatient

    everything = dump(page, "", tmp_path / "p1")
    assert len(everything.rollouts()) == len(everything.visible()) == len(records)
    assert everything.count == f"Showing {len(records)} of {len(records)} rollouts"

    only_failed = dump(page, "#failed=1", tmp_path / "p2")
    assert {a["data-passed"] for a in only_failed.visible()} == {"0"}
    assert len(only_failed.visible()) == len(failed)
    assert only_failed.count == f"Showing {len(failed)} of {len(records)} rollouts"

    combined = dump(page, "#persona=impatient&termination=user_stop&failed=1", tmp_path / "p3")
    visible = combined.visible()
    assert visible and len(visible) == sum(
        1 for r in impatient if r.termination.value == "user_stop" and r in failed
    )
    assert all(a["data-persona"] == "impatient" for a in visible)

    # Who failed: the quitting users are the simulator's failures, the
    # careless assistant's the assistant's.
    simulator = [r for r in failed if r.user_failure and r.user_failure[0].severity == "critical"]
    assert len(simulator) == 4
    assert all(
        r.user_failure and r.user_failure[0].kind == "premature_termination" for r in simulator
    )
    by_simulator = dump(page, "#blame=simulator", tmp_path / "p4")
    assert len(by_simulator.visible()) == len(simulator)
    assert {a["data-persona"] for a in by_simulator.visible()} == {"cooperative", "terse"}
    by_assistant = dump(page, "#blame=assistant", tmp_path / "p5")
    assert len(by_assistant.visible()) == len(failed) - len(simulator)
    shown = "".join(by_simulator.text)
    assert "Simulator failures" in shown and "premature_termination (critical" in shown


@pytest.mark.timeout(90)
def test_untrusted_content_is_shown_as_text_not_run(
    report: tuple[Path, list[Rollout]], tmp_path: Path
) -> None:
    page, _ = report
    source = page.read_text()
    assert "<img" not in source and source.count("<script>") == 1
    dom = dump(page, "", tmp_path / "p")
    tags = [t for t, _ in dom.tags]
    assert "img" not in tags and tags.count("script") == 1
    body = next(a for t, a in dom.tags if t == "body")
    assert "data-pwned" not in body
    assert dom.title == "convo-sim report"
    shown = "".join(dom.text)
    assert ATTACK in shown  # the attack is displayed, as text
    assert "marquee" not in tags  # the persona's markup too


@pytest.mark.timeout(90)
def test_screenshot_is_a_real_picture(report: tuple[Path, list[Rollout]], tmp_path: Path) -> None:
    page, _ = report
    shot = tmp_path / "report.png"
    subprocess.run(
        [
            *chromium_args(tmp_path / "profile"),
            f"--screenshot={shot}",
            "--window-size=1280,2000",
            "--hide-scrollbars",
            page.resolve().as_uri() + "#failed=1",
        ],
        capture_output=True,
        timeout=60,
        check=True,
    )
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (1280, 2000)
    # A blank 1280x2000 page compresses to a few kB; charts, tables and text do not.
    assert len(data) > 50_000


def test_page_is_self_contained(report: tuple[Path, list[Rollout]]) -> None:
    _, records = report
    html = render_html(records[:-1], title="t")  # without the attack, which quotes src=
    assert "default-src 'none'" in unescape(html)
    for needle in ("src=", "href=", "@import", "url(", "<link"):
        assert needle not in html


def test_report_html_option_keeps_json_clean_and_fails_in_one_line(
    report: tuple[Path, list[Rollout]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    page, _ = report
    source = page.parent / "rollouts.jsonl"
    out = tmp_path / "again.html"
    capsys.readouterr()
    assert main(["report", str(source), "--json", "--html", str(out)]) == 0
    json.loads(capsys.readouterr().out)  # nothing but the JSON summary
    assert out.read_text() == page.read_text()  # the page is a function of the records
    assert main(["report", str(source), "--html", str(tmp_path / "no" / "such" / "dir.html")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot write the report" in err
