"""Persona populations (sampler, diversity) and the paired statistics of experiments."""

from __future__ import annotations

import itertools
import math
import statistics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from convo_sim import InputError, TerminationReason, Transcript
from convo_sim._paired import ALL_GROUPS, paired_comparisons
from convo_sim._records import Rollout
from convo_sim._stats import sign_flip_test
from convo_sim.scenarios import Scenario
from convo_sim.users import (
    PERSONA_SPEC_KEY,
    PERSONAS,
    Persona,
    get_persona,
    persona_prompt,
    population_diversity,
    sample_personas,
    scenario_persona,
)

# ---------------------------------------------------------------- the sampler


def test_the_same_seed_gives_the_same_people_and_prefixes_agree() -> None:
    ten = sample_personas(10, seed=4)
    assert ten == sample_personas(10, seed=4)
    assert sample_personas(3, seed=4) == ten[:3]
    assert [p.name for p in ten] == [f"pop4-{i:03d}" for i in range(10)]
    other = sample_personas(10, seed=5)
    assert [p.profile for p in other] != [p.profile for p in ten]
    assert sample_personas(0) == []
    with pytest.raises(ValueError):
        sample_personas(-1)


def test_sampled_personas_are_valid_and_round_trip_as_data() -> None:
    for persona in sample_personas(50, seed=1):
        assert persona.profile is not None and 18 <= persona.profile.age <= 75
        assert Persona.model_validate(persona.model_dump(mode="json")) == persona
        # The LLM user is told who the person is, not only how to behave.
        prompt = persona_prompt(persona)
        assert persona.profile.occupation in prompt and persona.name in prompt


def test_behaviour_follows_the_traits() -> None:
    people = sample_personas(400, seed=0)

    def mean_trait(trait: str, **where: object) -> float:
        chosen = [
            getattr(p.profile.traits, trait)  # type: ignore[union-attr]
            for p in people
            if all(getattr(p, k) == v for k, v in where.items())
        ]
        assert len(chosen) >= 10, where
        return statistics.fmean(chosen)

    assert mean_trait("extraversion", verbosity="verbose") > mean_trait(
        "extraversion", verbosity="terse"
    )
    patient = [p for p in people if p.patience is None]
    tense = [p for p in people if p.patience is not None]
    assert patient and tense
    assert statistics.fmean(p.profile.traits.neuroticism for p in tense) > statistics.fmean(  # type: ignore[union-attr]
        p.profile.traits.neuroticism  # type: ignore[union-attr]
        for p in patient
    )
    # Low agreeableness deflects more: cooperativeness follows agreeableness.
    agreeable = sorted(people, key=lambda p: p.profile.traits.agreeableness)  # type: ignore[union-attr]
    low, high = agreeable[:100], agreeable[-100:]
    assert statistics.fmean(p.cooperativeness for p in low) < statistics.fmean(
        p.cooperativeness for p in high
    )


def test_a_sampled_persona_rides_in_the_scenarios_metadata() -> None:
    [persona] = sample_personas(1, seed=9)
    spec = {PERSONA_SPEC_KEY: persona.model_dump(mode="json")}
    s = Scenario(id="s", persona=persona.name, metadata=spec)
    assert scenario_persona(s) == persona
    assert scenario_persona(Scenario(id="s", persona="terse")) == get_persona("terse")
    assert scenario_persona(Scenario(id="s")) is None
    with pytest.raises(InputError, match="names 'terse'"):
        scenario_persona(Scenario(id="s", persona="terse", metadata=spec))
    with pytest.raises(InputError, match="not a persona"):
        scenario_persona(
            Scenario(id="s", metadata={PERSONA_SPEC_KEY: {"name": "x", "typo_rate": 5}})
        )


# ---------------------------------------------------------------- diversity


def test_diversity_is_zero_for_clones_and_high_for_a_sample() -> None:
    clones = [sample_personas(1, seed=2)[0]] * 20
    flat = population_diversity(clones)
    assert flat.size == 20 and flat.mean_pairwise_distance == 0.0
    assert set(flat.entropy.values()) == {0.0} and flat.distinct_behaviours == 0.0
    assert all(sd == 0.0 for sd in flat.trait_sd.values())
    varied = population_diversity(sample_personas(60, seed=2))
    assert varied.mean_pairwise_distance > 0.3
    assert varied.distinct_behaviours > 0.5
    assert all(0.05 < sd <= 0.5 for sd in varied.trait_sd.values())
    assert varied.entropy["occupation"] > 0.5 and varied.entropy["verbosity"] > 0.3
    # The nine hand-made personas have no profiles: only behaviour is measured.
    bundled = population_diversity(list(PERSONAS.values()))
    assert bundled.trait_sd == {} and bundled.distinct_behaviours == 1.0
    assert "occupation" not in bundled.entropy
    assert population_diversity([]).size == 0


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 25))
def test_diversity_metrics_stay_in_range(seed: int, n: int) -> None:
    d = population_diversity(sample_personas(n, seed=seed))
    assert d.size == n
    assert 0.0 <= d.mean_pairwise_distance <= 1.0 and 0.0 <= d.distinct_behaviours <= 1.0
    assert all(0.0 <= v <= 1.0 for v in d.entropy.values())


# ---------------------------------------------------------------- paired statistics


def brute_force_p(differences: list[float]) -> float:
    nonzero = [d for d in differences if d != 0]
    observed = abs(sum(nonzero))
    totals = [
        abs(sum(s * d for s, d in zip(signs, nonzero, strict=True)))
        for signs in itertools.product((1, -1), repeat=len(nonzero))
    ]
    return sum(t >= observed - 1e-12 for t in totals) / len(totals)


def test_sign_flip_test_known_values() -> None:
    assert sign_flip_test([]) == (None, "no pairs")
    assert sign_flip_test([0.0, 0.0])[0] == 1.0
    # Binary rewards: the exact sign test, for any number of pairs.
    assert sign_flip_test([1.0] * 5) == (pytest.approx(2 / 32), "exact sign test")
    p, _ = sign_flip_test([1.0] * 40 + [-1.0] * 10)
    assert p == pytest.approx(2 * sum(math.comb(50, k) for k in range(11)) / 2**50)
    mixed = [0.5, 0.25, -0.1, 0.75, 0.3, 0.0]
    assert sign_flip_test(mixed) == (
        pytest.approx(brute_force_p(mixed)),
        "exact sign-flip permutation test",
    )


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from([-1.0, -0.5, -0.25, 0.0, 0.25, 0.5, 1.0]), max_size=10))
def test_sign_flip_test_matches_enumeration_and_is_symmetric(differences: list[float]) -> None:
    p, _ = sign_flip_test(differences)
    if not differences:
        assert p is None
        return
    assert p is not None and 0.0 < p <= 1.0
    assert p == pytest.approx(brute_force_p(differences))
    assert sign_flip_test([-d for d in differences])[0] == pytest.approx(p)


def test_large_samples_use_a_seeded_monte_carlo_that_is_never_0() -> None:
    differences = [0.1 * (i % 7 + 1) for i in range(30)]
    p, method = sign_flip_test(differences, resamples=500)
    assert method.startswith("sign-flip permutation test") and p == 1 / 501
    assert sign_flip_test(differences, resamples=500) == (p, method)


def record(assistant: str, persona: str, base: str, index: int, reward: float) -> Rollout:
    return Rollout(
        responses_create_params={"input": Transcript().to_responses_input()},
        reward=reward,
        scenario_id=f"{base}/{persona}/{assistant}",
        sample_index=index,
        seed=index,
        termination=TerminationReason.USER_STOP,
        terminated_by="stop_token",
        turns=2,
        metadata={"assistant": assistant, "persona": persona, "base_scenario": base},
    )


def test_paired_comparisons_pair_by_user_not_by_order() -> None:
    rows = [
        record("a", "terse", "s1", 0, 1.0),
        record("a", "terse", "s1", 1, 1.0),
        record("a", "terse", "s2", 0, 0.0),
        record("b", "terse", "s2", 0, 1.0),  # b wins this pair
        record("b", "terse", "s1", 1, 0.0),  # and loses this one
        record("b", "terse", "s1", 0, 1.0),  # a tie
        record("b", "terse", "s3", 0, 1.0),  # no partner: left out
        record("a", "vague", "s1", 0, 1.0),
        record("b", "vague", "s1", 0, 0.5),
    ]
    found = {r.group["persona"]: r for r in paired_comparisons(reversed(rows))}
    terse = found["terse"]
    assert (terse.baseline, terse.other, terse.pairs) == ("a", "b", 3)
    assert (terse.wins, terse.losses, terse.ties) == (1, 1, 1)
    assert terse.mean_difference == 0.0 and terse.p_value == 1.0
    low, high = terse.difference_ci  # type: ignore[misc]
    assert low <= 0.0 <= high
    pooled = found[ALL_GROUPS]
    assert pooled.pairs == 4 and pooled.mean_difference == pytest.approx(-0.5 / 4)
    assert found["vague"].mean_difference == -0.5
    # The baseline can be chosen; one condition alone gives no rows.
    flipped = {r.group["persona"]: r for r in paired_comparisons(rows, baseline="b")}
    assert flipped["vague"].mean_difference == 0.5
    assert paired_comparisons([r for r in rows if r.metadata["assistant"] == "a"]) == []
