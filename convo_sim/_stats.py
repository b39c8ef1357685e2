"""Confidence intervals for experiment tables and reports.

Two intervals, both at 95% by default:

* `wilson_interval` for proportions (pass rate, premature-stop rate). The
  Wilson score interval stays inside [0, 1] and behaves at 0/n and n/n,
  where the normal approximation collapses to a zero-width interval.
* `bootstrap_interval` for means of bounded values (reward, goal coverage,
  turns): the percentile bootstrap with a fixed seed, so that the same
  rollouts always give the same table. Given the differences of paired
  samples it is the paired bootstrap (pairs are resampled whole).

And one test, for paired designs (two assistants meeting the same users):
`sign_flip_test`, the paired permutation test.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from statistics import NormalDist

__all__ = [
    "BOOTSTRAP_LIMIT",
    "DEFAULT_RESAMPLES",
    "bootstrap_interval",
    "mean",
    "sign_flip_test",
    "wilson_interval",
]

DEFAULT_RESAMPLES = 2000


def _z(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence!r}")
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def mean(values: Sequence[float]) -> float | None:
    """The arithmetic mean, or None for no values."""
    return sum(values) / len(values) if values else None


def wilson_interval(
    successes: int, n: int, *, confidence: float = 0.95
) -> tuple[float, float] | None:
    """The Wilson score interval of a proportion; None when `n` is 0.

    Raises:
        ValueError: `successes` is outside 0..n, or `confidence` outside (0, 1).
    """
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be within 0..{n}, got {successes!r}")
    if n == 0:
        return None
    z = _z(confidence)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # At 0/n and n/n the bound is exactly 0 or 1; rounding would leave 1e-17.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return (low, high)


BOOTSTRAP_LIMIT = 2_000
"""Most values a bootstrap interval resamples; beyond, the normal interval."""


def bootstrap_interval(
    values: Sequence[float],
    *,
    confidence: float = 0.95,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> tuple[float, float] | None:
    """The percentile-bootstrap interval of the mean; None for no values.

    A single value, or identical values, give a zero-width interval: the
    bootstrap cannot see variation that the sample does not hold. Past
    `BOOTSTRAP_LIMIT` values the interval is the normal one, mean ± z·s/√n
    (clipped to the values' range), which the percentile bootstrap of a
    mean converges to: resampling 100,000 rewards 1,000 times took minutes
    (a report of 100,000 rollouts) and moves the bounds by less than 0.001.

    Raises:
        ValueError: `confidence` outside (0, 1) or `resamples` below 1.
    """
    _z(confidence)
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples!r}")
    if not values:
        return None
    if min(values) == max(values):
        return (float(values[0]), float(values[0]))
    n = len(values)
    if n > BOOTSTRAP_LIMIT:
        centre = math.fsum(values) / n
        spread = math.sqrt(math.fsum((v - centre) ** 2 for v in values) / (n - 1))
        half = _z(confidence) * spread / math.sqrt(n)
        return (max(min(values), centre - half), min(max(values), centre + half))
    rng = random.Random(seed)
    means = sorted(sum(rng.choices(values, k=n)) / n for _ in range(resamples))
    alpha = (1 - confidence) / 2
    low = means[max(0, math.floor(alpha * resamples))]
    high = means[min(resamples - 1, math.ceil((1 - alpha) * resamples) - 1)]
    return (low, high)


def sign_flip_test(
    differences: Sequence[float], *, resamples: int = DEFAULT_RESAMPLES * 5, seed: int = 0
) -> tuple[float | None, str]:
    """Two-sided paired permutation (sign-flip) test that the mean difference is 0.

    Under the null hypothesis (the two conditions are exchangeable within a
    pair) each pair's difference is as likely positive as negative, so the
    null distribution of the mean comes from flipping signs. It assumes
    nothing about the shape of the rewards (they are bounded, often binary,
    where a t-test's normality fails). Pairs with no difference carry no
    information and drop out. The p-value is computed exactly when it can
    be: when every non-zero difference has the same size (binary rewards)
    the test is the exact sign test (McNemar's exact test), for any n; with
    up to 12 non-zero differences every sign pattern is enumerated; beyond
    that `resamples` random patterns with a fixed seed (the Monte Carlo
    p-value `(1 + extreme) / (1 + resamples)`, never 0).

    Returns:
        `(p_value, method)`; `(None, "no pairs")` without differences, and
        `(1.0, ...)` when every difference is 0.
    """
    if not differences:
        return None, "no pairs"
    nonzero = [d for d in differences if d != 0]
    n = len(nonzero)
    if n == 0:
        return 1.0, "sign test (all pairs tied)"
    observed = abs(sum(nonzero))
    tolerance = 1e-12 * max(1.0, observed)
    sizes = {abs(d) for d in nonzero}
    if len(sizes) == 1:
        # S = size * (2k - n) with k ~ Binomial(n, 1/2): sum the tails.
        positives = sum(d > 0 for d in nonzero)
        extreme = min(positives, n - positives)
        tail = sum(math.comb(n, k) for k in range(extreme + 1)) / 2**n
        return min(1.0, 2 * tail), "exact sign test"
    if n <= 12:
        count = 0
        for pattern in range(2**n):
            total = sum(-d if pattern >> i & 1 else d for i, d in enumerate(nonzero))
            count += abs(total) >= observed - tolerance
        return count / 2**n, "exact sign-flip permutation test"
    rng = random.Random(seed)
    extreme = 0
    for _ in range(resamples):
        total = sum(d if rng.random() < 0.5 else -d for d in nonzero)
        extreme += abs(total) >= observed - tolerance
    return (1 + extreme) / (1 + resamples), f"sign-flip permutation test ({resamples} resamples)"
