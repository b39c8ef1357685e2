"""Who a simulated user is: demographics and OCEAN-style traits.

A `PersonaProfile` describes the person behind a `Persona`: age,
occupation, region, education, first language, and the five OCEAN traits
(openness, conscientiousness, extraversion, agreeableness, neuroticism) on
a 0..1 scale. It shapes nothing by itself: the population sampler
(`convo_sim.users.sample_personas`) derives a persona's behaviour from it,
and `persona_prompt` describes it to an LLM user. Reports show it.
"""

from __future__ import annotations

from typing import Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Education", "PersonaProfile", "Traits"]

Education: TypeAlias = Literal["secondary", "vocational", "bachelor", "graduate"]

_Trait = Field(default=0.5, ge=0.0, le=1.0)


class Traits(BaseModel):
    """The five OCEAN traits, each 0 (low) .. 1 (high); 0.5 is average."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    openness: float = _Trait
    conscientiousness: float = _Trait
    extraversion: float = _Trait
    agreeableness: float = _Trait
    neuroticism: float = _Trait


class PersonaProfile(BaseModel):
    """The person a persona plays: demographics and traits.

    Attributes:
        age: in years.
        occupation: a job title or situation ("nurse", "retired").
        region: where they live, loosely ("Midwest US", "Northern England").
        education: the highest level completed.
        first_language: their first language; not English means the user
            writes English as a second language.
        traits: OCEAN traits.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    age: int = Field(ge=16, le=100)
    occupation: str = Field(min_length=1, max_length=80)
    region: str = Field(min_length=1, max_length=80)
    education: Education = "secondary"
    first_language: str = Field(default="English", min_length=1, max_length=40)
    traits: Traits = Field(default_factory=Traits)

    def describe(self) -> str:
        """A few lines about the person, for an LLM user's prompt."""
        second = (
            "" if self.first_language == "English" else " (you write English as a second language)"
        )
        return (
            f"About you: {self.age} years old; occupation: {self.occupation}; "
            f"lives in {self.region}; education: {self.education}; "
            f"first language: {self.first_language}{second}.\n{_traits_text(self.traits)}"
        )


_TRAIT_WORDS = {
    "openness": ("conventional", "curious and open to new ideas"),
    "conscientiousness": ("easy-going and a little disorganised", "organised and precise"),
    "extraversion": ("reserved", "outgoing and talkative"),
    "agreeableness": ("blunt and hard to please", "friendly and accommodating"),
    "neuroticism": ("calm and even-tempered", "easily stressed and quick to get annoyed"),
}


def _traits_text(traits: Traits) -> str:
    words = []
    for name, (low, high) in _TRAIT_WORDS.items():
        value = getattr(traits, name)
        if value <= 0.3:
            words.append(low)
        elif value >= 0.7:
            words.append(high)
    if not words:
        return "Your temperament is unremarkable."
    return "You are " + "; ".join(words) + "."
