"""Persona populations: a seeded sampler of structured personas, and their diversity.

`sample_personas(n, seed=...)` draws `n` people (a `PersonaProfile`:
demographics and OCEAN traits) and derives from each the behaviour of a
`Persona`, so that a population varies the way users do, with traits that
hang together, instead of nine hand-made caricatures. The same persona
drives the rule-based calendar user (verbosity, cooperativeness, patience,
disclosure, change of mind, expertise, quirks, typos, asides) and an LLM
user (`persona_prompt` describes the person and the behaviour).

The marginals are plain, documented assumptions, not census data: ages 18
to 75 (roughly uniform over working life, thinning after 65), occupations
and regions drawn uniformly from fixed lists, education and first language
with fixed weights, traits from a Beta(2, 2) (centred, rarely extreme).
Behaviour follows the traits, with noise:

| behaviour | from |
| --- | --- |
| verbosity | extraversion (high: verbose, low: terse) |
| cooperativeness | agreeableness (0.55 .. 1.0) |
| patience | neuroticism (calm: None, i.e. the user's default; tense: 0 or 1 mistakes) |
| disclosure | conscientiousness (high: often `all_at_once`), low agreeableness (`when_asked`) |
| change of mind | low conscientiousness |
| off-topic rate | extraversion |
| expertise | age and education |
| quirks, typos | age, first language, conscientiousness |

`population_diversity` measures how varied a population is, so that two
samplers (or two seeds) can be compared: the normalised entropy of each
categorical field, the spread of each trait, the mean pairwise distance
between personas, and the share of distinct behaviours.
"""

from __future__ import annotations

import itertools
import math
import random
from collections import Counter
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict

from convo_sim.users._persona import Disclosure, Expertise, Persona, Quirk, Verbosity
from convo_sim.users._profile import Education, PersonaProfile, Traits

__all__ = ["PopulationDiversity", "population_diversity", "sample_personas"]

_OCCUPATIONS = (
    "nurse", "teacher", "software engineer", "accountant", "electrician", "chef",
    "retail manager", "graduate student", "lawyer", "truck driver", "pharmacist",
    "graphic designer", "civil servant", "farmer", "sales representative", "researcher",
    "small business owner", "dental hygienist", "police officer", "social worker",
    "architect", "mechanic", "marketing manager", "librarian", "physiotherapist",
)  # fmt: skip
_REGIONS = (
    "the US Midwest", "the US South", "California", "New England", "Ontario", "London",
    "Northern England", "Scotland", "Dublin", "Sydney", "Auckland", "Cape Town",
    "Bangalore", "Singapore", "Lagos", "Nairobi", "Berlin", "Madrid", "Mexico City",
    "Sao Paulo",
)  # fmt: skip
_EDUCATION: tuple[tuple[Education, float], ...] = (
    ("secondary", 0.35),
    ("vocational", 0.2),
    ("bachelor", 0.3),
    ("graduate", 0.15),
)
_LANGUAGES = (
    ("English", 0.6),
    ("Spanish", 0.1),
    ("Hindi", 0.06),
    ("Mandarin", 0.06),
    ("German", 0.05),
    ("Portuguese", 0.05),
    ("Yoruba", 0.04),
    ("French", 0.04),
)


def _weighted(rng: random.Random, options: Sequence[tuple[str, float]]) -> str:
    return rng.choices([o for o, _ in options], weights=[w for _, w in options])[0]


def _trait(rng: random.Random) -> float:
    return round(rng.betavariate(2.0, 2.0), 3)


def _profile(rng: random.Random) -> PersonaProfile:
    age = rng.randint(18, 64) if rng.random() < 0.85 else rng.randint(65, 75)
    return PersonaProfile(
        age=age,
        occupation="retired" if age >= 67 and rng.random() < 0.7 else rng.choice(_OCCUPATIONS),
        region=rng.choice(_REGIONS),
        education=_weighted(rng, _EDUCATION),  # type: ignore[arg-type]
        first_language=_weighted(rng, _LANGUAGES),
        traits=Traits(
            openness=_trait(rng),
            conscientiousness=_trait(rng),
            extraversion=_trait(rng),
            agreeableness=_trait(rng),
            neuroticism=_trait(rng),
        ),
    )


def _behaviour(rng: random.Random, name: str, profile: PersonaProfile) -> Persona:
    t = profile.traits
    jitter = rng.uniform(-0.15, 0.15)
    verbosity: Verbosity = (
        "verbose"
        if t.extraversion + jitter > 0.65
        else "terse"
        if t.extraversion + jitter < 0.35
        else "normal"
    )
    tense = t.neuroticism + rng.uniform(-0.1, 0.1)
    patience = None if tense < 0.45 else 1 if tense < 0.7 else 0
    roll = rng.random()
    disclosure: Disclosure = (
        "all_at_once"
        if roll < 0.5 * t.conscientiousness**2
        else "when_asked"
        if roll > 1 - 0.4 * (1 - t.agreeableness) ** 2
        else "progressive"
    )
    schooled = profile.education in ("bachelor", "graduate")
    expertise: Expertise = (
        "expert"
        if schooled and profile.age < 50 and rng.random() < 0.5
        else "novice"
        if profile.age >= 65 or rng.random() < 0.2
        else "intermediate"
    )
    quirks: list[Quirk] = []
    if profile.age < 30 and rng.random() < 0.5:
        quirks.append("lowercase")
    if t.conscientiousness < 0.35 and rng.random() < 0.6:
        quirks.append("no_punctuation")
    if profile.age < 40 and rng.random() < 0.3:
        quirks.append("abbreviations")
    if t.extraversion > 0.7 and rng.random() < 0.4:
        quirks.append("exclamations")
    second_language = profile.first_language != "English"
    typo_rate = round(
        min(0.1, 0.02 * (1 - t.conscientiousness) + (0.03 if second_language else 0.0)), 3
    )
    return Persona(
        name=name,
        description=f"{profile.age}, {profile.occupation}, {profile.region}",
        verbosity=verbosity,
        cooperativeness=round(0.55 + 0.45 * t.agreeableness, 3),
        patience=patience,
        disclosure=disclosure,
        change_of_mind=round(0.4 * (1 - t.conscientiousness) ** 2, 3),
        typo_rate=typo_rate,
        off_topic_rate=round(0.3 * t.extraversion * (1 - t.conscientiousness), 3),
        expertise=expertise,
        quirks=tuple(quirks),
        profile=profile,
    )


def sample_personas(n: int, *, seed: int = 0, prefix: str = "pop") -> list[Persona]:
    """`n` structured personas drawn from the population; the same seed, the same people.

    Persona `i` depends only on `(seed, i)`, so the first `k` of a sample
    of `n` are the sample of `k`. Names are `f"{prefix}{seed}-{i:03d}"`.

    Raises:
        ValueError: `n` is negative.
    """
    if n < 0:
        raise ValueError(f"n must be at least 0, got {n!r}")
    people = []
    for i in range(n):
        rng = random.Random(f"population:{seed}:{i}")
        people.append(_behaviour(rng, f"{prefix}{seed}-{i:03d}", _profile(rng)))
    return people


class PopulationDiversity(BaseModel):
    """How varied a population of personas is.

    Attributes:
        size: personas measured.
        entropy: per categorical field (verbosity, disclosure, patience,
            expertise, quirks, age band, occupation, region, education,
            first language), the Shannon entropy of its values divided by
            the most it could be (log of the number of possible values, or
            of the population size if smaller): 0 when everyone is alike, 1
            when the values are spread evenly.
        trait_sd: per OCEAN trait, the standard deviation (0 .. 0.5).
        mean_pairwise_distance: the mean, over all pairs, of the share of
            fields two personas differ in (traits count as differing by
            their absolute difference): 0 all alike, 1 all different.
        distinct_behaviours: the share of personas whose behaviour (every
            field but the name, description and profile) no other has.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    size: int
    entropy: dict[str, float]
    trait_sd: dict[str, float]
    mean_pairwise_distance: float
    distinct_behaviours: float


_CATEGORIES = {
    "verbosity": 3,
    "disclosure": 3,
    "patience": 4,
    "expertise": 3,
    "quirks": 16,
    "age_band": 6,
    "occupation": len(_OCCUPATIONS) + 1,
    "region": len(_REGIONS),
    "education": len(_EDUCATION),
    "first_language": len(_LANGUAGES),
}
_TRAITS = ("openness", "conscientiousness", "extraversion", "agreeableness", "neuroticism")


def _fields(persona: Persona) -> dict[str, str]:
    profile = persona.profile
    values = {
        "verbosity": persona.verbosity,
        "disclosure": persona.disclosure,
        "patience": str(persona.patience),
        "expertise": persona.expertise,
        "quirks": ",".join(sorted(persona.quirks)),
    }
    if profile is not None:
        values.update(
            age_band=str(min(profile.age // 10, 7)),
            occupation=profile.occupation,
            region=profile.region,
            education=profile.education,
            first_language=profile.first_language,
        )
    return values


def _entropy(values: Sequence[str], possible: int) -> float:
    counts = Counter(values)
    n = len(values)
    most = math.log(min(possible, n)) if min(possible, n) > 1 else 0.0
    if most == 0.0:
        return 0.0
    h = -sum(c / n * math.log(c / n) for c in counts.values())
    return round(min(1.0, h / most), 4)


def population_diversity(personas: Sequence[Persona]) -> PopulationDiversity:
    """Diversity metrics of `personas` (see `PopulationDiversity`)."""
    fields = [_fields(p) for p in personas]
    names = sorted({key for f in fields for key in f}, key=list(_CATEGORIES).index)
    entropy = {key: _entropy([f.get(key, "") for f in fields], _CATEGORIES[key]) for key in names}
    traits = [p.profile.traits for p in personas if p.profile is not None]
    trait_sd = (
        {name: round(_sd([getattr(t, name) for t in traits]), 4) for name in _TRAITS}
        if traits
        else {}
    )
    distances = [
        _distance(a, b, fa, fb)
        for (a, fa), (b, fb) in itertools.combinations(zip(personas, fields, strict=True), 2)
    ]
    behaviours = Counter(
        p.model_dump_json(exclude={"name", "description", "profile"}) for p in personas
    )
    distinct = sum(
        1
        for p in personas
        if behaviours[p.model_dump_json(exclude={"name", "description", "profile"})] == 1
    )
    return PopulationDiversity(
        size=len(personas),
        entropy=entropy,
        trait_sd=trait_sd,
        mean_pairwise_distance=round(sum(distances) / len(distances), 4) if distances else 0.0,
        distinct_behaviours=round(distinct / len(personas), 4) if personas else 0.0,
    )


def _sd(values: Sequence[float]) -> float:
    if len(values) < 2:
        return 0.0
    centre = sum(values) / len(values)
    return math.sqrt(sum((v - centre) ** 2 for v in values) / len(values))


def _distance(a: Persona, b: Persona, fa: dict[str, str], fb: dict[str, str]) -> float:
    keys = fa.keys() | fb.keys()
    parts = [float(fa.get(k) != fb.get(k)) for k in keys]
    if a.profile is not None and b.profile is not None:
        parts += [
            abs(getattr(a.profile.traits, name) - getattr(b.profile.traits, name))
            for name in _TRAITS
        ]
    return sum(parts) / len(parts) if parts else 0.0
