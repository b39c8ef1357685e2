"""A user simulator backed by a chat model.

The model plays the user: it gets a system prompt with its goal (and
persona), then the dialogue with roles flipped (`View.messages`), so the
assistant's words arrive as `user` messages and its own as `assistant`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from convo_sim._actors import View
from convo_sim._completion import DEFAULT_STOP_TOKEN
from convo_sim._messages import Message
from convo_sim._models import ChatModel, ModelSettings, complete_nonempty
from convo_sim._scenario_card import SCENARIO_CARD_TAG, format_scenario_card, parse_scenario_card
from convo_sim.users._persona import PERSONAS, Persona, persona_prompt

__all__ = ["SCENARIO_CARD_TAG", "LLMUser", "parse_scenario_card", "user_system_prompt"]


def user_system_prompt(
    goal: str,
    *,
    persona: str | None = None,
    stop_token: str = DEFAULT_STOP_TOKEN,
    scenario_card: Mapping[str, Any] | None = None,
) -> str:
    """The system prompt that makes a chat model play a user with `goal`.

    `scenario_card`, when given, is appended as one line of JSON between
    `<convo-sim-scenario>` tags: the same goal as data, which a rule-based
    model server (`convo-sim serve`'s `calendar-user`) reads back with
    `parse_scenario_card` to rebuild the user.
    """
    parts = [
        "You are role-playing a user who is chatting with an AI assistant. "
        "You are the user, never the assistant: write only the user's next message, "
        "with no role labels and no commentary.",
        f"Your goal:\n{goal.strip()}",
        "Rules:\n"
        "- Unless your persona says otherwise, disclose your goal progressively: "
        "one request per message, the way a real user would, not everything at once.\n"
        "- Never invent facts. Use only the names, times and details in your goal; "
        "if the assistant asks for something your goal does not say, say it does not matter.\n"
        "- Check the assistant's answers against your goal and point out what is wrong.\n"
        f"- When your goal is fully met, reply with {stop_token} and nothing else.",
    ]
    if persona:
        parts.append(f"Your persona:\n{persona.strip()}")
    if scenario_card is not None:
        card = format_scenario_card(scenario_card)
        parts.append(f"Your goal as data (for tools; do not quote it):\n{card}")
    return "\n\n".join(parts)


class LLMUser:
    """A user simulator whose messages come from a `ChatModel`.

    Text that comes with the stop token is kept in the transcript as it is;
    the orchestrator's stop-token detector ends the dialogue on it.

    Stateless between calls, so one instance may serve many dialogues with
    the same goal.

    Args:
        model: the chat model.
        goal: what the user wants, in words.
        persona: how the user behaves: a `Persona`, the name of a bundled
            one (`terse`, ...), both turned into words by
            `convo_sim.users.persona_prompt`, or free text.
        stop_token: what the user says when its goal is met.
        settings: sampling settings for every request.
        empty_retries: how many more times to ask when the model replies
            with nothing; then `EmptyReplyError` ends the dialogue as
            `user_error`.
        scenario_card: the goal as data, embedded in the prompt (see
            `user_system_prompt`).
    """

    def __init__(
        self,
        model: ChatModel,
        *,
        goal: str,
        persona: Persona | str | None = None,
        stop_token: str = DEFAULT_STOP_TOKEN,
        settings: ModelSettings | None = None,
        empty_retries: int = 2,
        scenario_card: Mapping[str, Any] | None = None,
    ) -> None:
        if not goal.strip():
            raise ValueError("an LLM user needs a non-empty goal")
        if empty_retries < 0:
            raise ValueError(f"empty_retries must be >= 0, got {empty_retries!r}")
        if isinstance(persona, str) and persona in PERSONAS:
            persona = PERSONAS[persona]
        if isinstance(persona, Persona):
            persona = persona_prompt(persona, stop_token=stop_token)
        self.model = model
        self.goal = goal
        self.persona = persona
        self.stop_token = stop_token
        self.settings = settings or ModelSettings()
        self.empty_retries = empty_retries
        self.system_prompt = user_system_prompt(
            goal, persona=persona, stop_token=stop_token, scenario_card=scenario_card
        )
        self._system = Message(role="system", content=self.system_prompt)

    def prompt_for(self, view: View) -> tuple[Message, ...]:
        """The messages sent to the model for `view`: own prompt, then the flipped dialogue."""
        return (self._system, *view.messages)

    async def respond(self, view: View) -> Message:
        """Ask the model for the user's next message.

        Raises:
            EmptyReplyError: the model kept replying with nothing.
            ModelError: the request failed for good.
        """
        completion = await complete_nonempty(
            self.model, self.prompt_for(view), self.settings, empty_retries=self.empty_retries
        )
        reply = completion.message
        return Message(role="user", content=reply.text, metadata=reply.metadata)
