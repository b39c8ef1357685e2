"""The run summary as text, shared by `convo-sim run`, `report` and `verify`."""

from __future__ import annotations

from convo_sim._metrics import Summary

__all__ = ["format_summary"]


_ALL_KS = 10
"""Up to this many samples every k is shown; beyond, powers of two and the largest."""


def _ks(values: dict[int, float]) -> str:
    ks = sorted(values)
    if len(ks) > _ALL_KS:
        shown = {k for k in ks if k & (k - 1) == 0} | {ks[-1]}
        ks = [k for k in ks if k in shown]
    return "  ".join(f"k={k} {values[k]:.3f}" for k in ks)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def format_summary(summary: Summary) -> str:
    """A few aligned lines: rollouts, reward ± stderr, pass@k, pass^k, endings, turns, tokens."""
    if summary.samples_min == summary.samples_max:
        per = f"{summary.samples_max}"
    else:
        per = f"{summary.samples_min}-{summary.samples_max}"
    scenarios = _plural(summary.scenarios, "scenario")
    samples = "sample" if per == "1" else "samples"
    lines = [f"rollouts     {summary.rollouts} ({scenarios} x {per} {samples})"]
    if summary.duplicates:
        lines.append(
            f"duplicates   {summary.duplicates} (repeated samples, counted once; "
            "was the file written twice?)"
        )
    if summary.mean_reward is None:
        lines.append("mean reward  n/a (no rollout was scored)")
    else:
        stderr = "n/a" if summary.reward_stderr is None else f"{summary.reward_stderr:.3f}"
        lines.append(
            f"mean reward  {summary.mean_reward:.3f} ± {stderr} (stderr, {summary.scored} scored)"
        )
        lines.append(f"pass@k       {_ks(summary.pass_at_k)}  (reward >= {summary.threshold:g})")
        lines.append(f"pass^k       {_ks(summary.pass_hat_k)}")
    endings = ", ".join(f"{reason} {count}" for reason, count in summary.terminations.items())
    lines.append(f"termination  {endings or 'none'}")
    if summary.errors:
        lines.append(f"errors       {summary.errors}")
    turns = "n/a" if summary.mean_turns is None else f"{summary.mean_turns:.2f}"
    lines.append(f"turns        mean {turns}")
    u = summary.usage
    lines.append(
        f"tokens       {u.total_tokens:,} (prompt {u.prompt_tokens:,}, "
        f"completion {u.completion_tokens:,})"
    )
    return "\n".join(lines)
