"""The rule-based reviewer of the calendar's simulated user: did the user fail, not the assistant?

`review_user` reads one dialogue, its scenario's goal and persona, and says
what the user did wrong (`convo_sim.UserFailureTag`s), or `False`. It reads
only the transcript, so it reviews rule-based and LLM users alike; for the
rule-based users it is exact, since their conduct is what these rules
check. It is what `convo-sim run` and `experiment` record as
`user_failure`, and what the served `calendar-user-reviewer` answers.

Blame goes to the user only where a perfect assistant would have failed
too. An assistant turn is *right* when every turn verifier scores it 1
(its calendar holds everything asked so far, within every constraint):

* `premature_termination` (critical): the user sent its stop signal, its
  goal unmet, right after a right turn (a user that gives up after a wrong
  one is within its rights);
* `withheld_info` (critical): the dialogue ran out of turns with part of
  the goal never told, and the user spent turns telling nothing new after
  right turns;
* `contradicted_goal`: the last duration or constraint the user gave for a
  goal event is not the goal's (critical when the goal was not met);
* `hallucination`: the user asked for an event its goal does not hold
  (critical when the goal was not met, else major);
* `revealed_info_early` (minor): disclosures that broke the persona's pacing;
* `inconsistent_behavior` (minor): the stop signal repeated or followed by
  more talk, or never sent although the goal was met and the user kept
  talking.
"""

from __future__ import annotations

from collections.abc import Sequence

from convo_sim._completion import DEFAULT_STOP_TOKEN
from convo_sim._messages import Message, Transcript
from convo_sim._records import Rollout
from convo_sim._user_failure import Severity, UserFailure, UserFailureTag, user_failure_of
from convo_sim._verification import TurnContext
from convo_sim.domains.calendar._fidelity import user_fidelity
from convo_sim.domains.calendar._intents import RequestedState, message_requests
from convo_sim.domains.calendar._scenario import CalendarScenario
from convo_sim.domains.calendar._verifiers import calendar_verifiers
from convo_sim.users._persona import scenario_persona

__all__ = ["review_rollout", "review_user", "turns_right"]


def turns_right(transcript: Transcript) -> list[bool]:
    """Whether each assistant turn was right, by the calendar's turn verifiers."""
    turn_verifiers, _ = calendar_verifiers(CalendarScenario(id="review"))
    right: list[bool] = []
    messages = transcript.messages
    for index, message in enumerate(messages):
        if message.role != "assistant":
            continue
        ctx = TurnContext(Transcript(messages=messages[: index + 1]), message, len(right) + 1, None)
        right.append(all(v(ctx).score >= 1.0 for v in turn_verifiers))  # type: ignore[union-attr]
    return right


def review_rollout(rollout: Rollout, scenario: CalendarScenario) -> UserFailure | None:
    """`review_user` of a record: its turn scores say which turns were right.

    None for a scenario without a goal (nothing to hold the user to) or a
    scripted user (it says what it was given).

    Raises:
        UnknownPersonaError: the scenario names a persona that is not bundled.
    """
    if scenario.goal is None or scenario.user_script:
        return None
    right: dict[int, bool] = {}
    for score in rollout.turn_scores:
        if score.turn is not None:
            right[score.turn] = right.get(score.turn, True) and score.score >= 1.0
    turns = [right.get(turn, True) for turn in range(1, rollout.turns + 1)]
    return review_user(
        rollout.transcript,
        scenario,
        termination=rollout.termination.value,
        goal_met=None if rollout.reward is None else rollout.reward >= 1.0,
        turns_ok=turns,
    )


def review_user(
    transcript: Transcript | Sequence[Message],
    scenario: CalendarScenario,
    *,
    termination: str,
    goal_met: bool | None = None,
    turns_ok: Sequence[bool] | None = None,
    stop_token: str = DEFAULT_STOP_TOKEN,
) -> UserFailure:
    """What the simulated user of one calendar dialogue did wrong (see the module docstring).

    Args:
        transcript: the dialogue.
        scenario: its scenario (goal, persona); a goal is needed.
        termination: why it ended (`TerminationReason` value).
        goal_met: whether the goal was met (the reward passed); default:
            everything was told and the last turn was right.
        turns_ok: whether each assistant turn was right; default: the
            calendar's turn verifiers decide (`turns_right`).
        stop_token: the user's stop signal.

    Raises:
        ValueError: the scenario has no goal.
        UnknownPersonaError: the scenario names a persona that is not bundled.
    """
    goal = scenario.goal
    if goal is None:
        raise ValueError(f"scenario {scenario.id!r} has no goal to review its user against")
    if not isinstance(transcript, Transcript):
        transcript = Transcript(messages=tuple(transcript))
    ok = list(turns_right(transcript) if turns_ok is None else turns_ok)
    persona = scenario_persona(scenario)
    fidelity = user_fidelity(
        transcript, expected=goal, persona=persona, goal_met=goal_met, stop_token=stop_token
    )
    met = (
        goal_met if goal_met is not None else fidelity.goal_coverage == 1.0 and bool(ok and ok[-1])
    )
    wanted = {
        int(key): (entry["duration"], entry.get("constraint"))
        for key, entry in goal.expected_state().items()
    }
    tags: list[UserFailureTag] = []
    state = RequestedState()
    turn = 0  # assistant turns so far
    idle_after_right = 0
    stopped_at: int | None = None
    for message in transcript.messages:
        if message.role == "assistant":
            turn += 1
            continue
        if message.role != "user":
            continue
        text = message.text
        before = {k: (e.duration, e.constraint) for k, e in state.events.items()}
        for request in message_requests(text.replace(stop_token, " ")):
            state.apply(request)
        after = {k: (e.duration, e.constraint) for k, e in state.events.items()}
        right_before = turn == 0 or (turn <= len(ok) and ok[turn - 1])
        if stop_token in text and stopped_at is None:
            stopped_at = turn + 1
            if not met and right_before:
                tags.append(
                    UserFailureTag(
                        kind="premature_termination",
                        severity="critical",
                        turn=turn + 1,
                        detail="stopped with its goal unmet after a right turn; never told: "
                        + (", ".join(fidelity.missing) or "nothing"),
                    )
                )
        elif after == before and right_before and fidelity.missing:
            idle_after_right += 1
    if stopped_at is None and not met and fidelity.missing and idle_after_right:
        tags.append(
            UserFailureTag(
                kind="withheld_info",
                severity="critical",
                detail=f"ran out of turns never telling {', '.join(fidelity.missing)}, after "
                f"{idle_after_right} message(s) that told nothing new",
            )
        )
    severe: Severity = "minor" if met else "critical"
    for key, event in sorted(state.events.items()):
        if key not in wanted:
            tags.append(
                UserFailureTag(
                    kind="hallucination",
                    severity="major" if met else "critical",
                    detail=f"asked for event {key}, which its goal does not hold",
                )
            )
            continue
        duration, constraint = wanted[key]
        said = (event.duration, event.constraint)
        if said[0] is not None and said[0] != duration:
            tags.append(
                UserFailureTag(
                    kind="contradicted_goal",
                    severity=severe,
                    detail=f"event {key}: asked for {said[0]} minutes, its goal says {duration}",
                )
            )
        if said[1] is not None and f"event {key} constraint" in fidelity.missing:
            tags.append(
                UserFailureTag(
                    kind="contradicted_goal",
                    severity=severe,
                    detail=f"event {key}: last asked for {said[1]!r}, its goal says {constraint!r}",
                )
            )
    if fidelity.pacing_violations:
        tags.append(
            UserFailureTag(
                kind="revealed_info_early",
                severity="minor",
                detail=f"{fidelity.pacing_violations} disclosure(s) broke the "
                f"{persona.disclosure if persona else ''} pacing of its persona",
            )
        )
    if fidelity.stop_discipline in ("repeated", "mid_dialogue"):
        tags.append(
            UserFailureTag(
                kind="inconsistent_behavior",
                severity="minor",
                turn=stopped_at,
                detail=f"stop signal {fidelity.stop_discipline.replace('_', ' ')}",
            )
        )
    elif fidelity.stop_discipline == "missing" and met and termination == "max_turns":
        last = transcript.by_role("user")
        if last and not message_requests(last[-1].text):
            tags.append(
                UserFailureTag(
                    kind="inconsistent_behavior",
                    severity="minor",
                    detail="kept talking after its goal was met instead of ending",
                )
            )
    return user_failure_of(tags)
