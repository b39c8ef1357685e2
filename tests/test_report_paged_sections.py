"""The paged report (past `inline_limit` rollouts) keeps the who-failed and paired sections.

The single page and the paged main page are written by different code;
these sections must not disappear when a run grows past the inline limit.
"""

from __future__ import annotations

from pathlib import Path

from convo_sim import Message, Rollout, TerminationReason, Transcript, UserFailureTag
from convo_sim._report_pages import write_report

LEFT_EARLY = UserFailureTag(kind="premature_termination", severity="critical", turn=1)


def record(base: str, index: int, assistant: str, reward: float, blame_user: bool) -> Rollout:
    transcript = Transcript(
        messages=(Message(role="user", content="hi"), Message(role="assistant", content="ok"))
    )
    return Rollout(
        responses_create_params={"input": transcript.to_responses_input()},
        reward=reward,
        scenario_id=f"{base}/cooperative/{assistant}",
        sample_index=index,
        seed=index,
        termination=TerminationReason.USER_STOP,
        terminated_by="stop_token",
        turns=1,
        user_failure=(LEFT_EARLY,) if blame_user else False,
        metadata={"persona": "cooperative", "assistant": assistant, "base_scenario": base},
    )


def test_the_paged_main_page_shows_who_failed_and_the_paired_differences(
    tmp_path: Path,
) -> None:
    records = [
        record(base, i, assistant, reward, blame_user=(assistant == "b" and i == 0))
        for base in ("s1", "s2")
        for i in range(3)
        for assistant, reward in (("a", 1.0), ("b", 0.0))
    ]
    main = write_report(records, tmp_path / "report.html", inline_limit=4, page_size=5)
    html = main.read_text(encoding="utf-8")
    assert (tmp_path / "report_transcripts").is_dir()  # paged, not the single page
    assert 'id="assistant-failures"' in html and 'id="simulator-failures"' in html
    # 6 failed rollouts of `b`: 2 the simulator's (left early), 4 the assistant's.
    assert '<div class="value">4</div>' in html and '<div class="value">2</div>' in html
    assert 'id="paired"' in html and "Paired differences (against a)" in html
