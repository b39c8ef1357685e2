"""An assistant backed by a chat model (OpenAI, vLLM, `convo-sim serve`, or a fake)."""

from __future__ import annotations

from convo_sim._actors import View
from convo_sim._messages import Message
from convo_sim._models import ChatModel, ModelSettings, complete_nonempty

__all__ = ["LLMAssistant"]


class LLMAssistant:
    """An assistant whose replies come from a `ChatModel`.

    Its system prompt comes from the dialogue when it has one: a transcript
    that starts with a system (or developer) message is sent as it is.
    Otherwise `system_prompt` is prepended, else the scenario's
    `system_prompt` if the view carries a scenario that has one.

    In a dialogue with tools (`View.tools`) every request carries them
    (chat completions and the Responses API alike), and a reply's tool
    calls are the message's `tool_calls`.

    Stateless between calls, so one instance may serve many dialogues.

    Args:
        model: the chat model.
        system_prompt: used when the transcript brings none.
        settings: sampling settings for every request.
        empty_retries: how many more times to ask when the model replies
            with nothing; then `EmptyReplyError` ends the dialogue as
            `assistant_error`.
    """

    def __init__(
        self,
        model: ChatModel,
        *,
        system_prompt: str | None = None,
        settings: ModelSettings | None = None,
        empty_retries: int = 2,
    ) -> None:
        if empty_retries < 0:
            raise ValueError(f"empty_retries must be >= 0, got {empty_retries!r}")
        self.model = model
        self.system_prompt = system_prompt
        self.settings = settings or ModelSettings()
        self.empty_retries = empty_retries

    def prompt_for(self, view: View) -> tuple[Message, ...]:
        """The messages sent to the model for `view`."""
        messages = view.messages
        if messages and messages[0].role in ("system", "developer"):
            return messages
        prompt = self.system_prompt
        if prompt is None:
            from_scenario = getattr(view.scenario, "system_prompt", None)
            prompt = from_scenario if isinstance(from_scenario, str) else None
        if not prompt:
            return messages
        return (Message(role="system", content=prompt), *messages)

    async def respond(self, view: View) -> Message:
        """Ask the model for the assistant's next message.

        Raises:
            EmptyReplyError: the model kept replying with nothing.
            ModelError: the request failed for good.
        """
        settings = self.settings
        if view.tools:
            # The dialogue's tools go with every request; the model's calls
            # come back as the message's tool_calls, which the dialogue runs.
            settings = settings.merged(ModelSettings(tools=tuple(view.tools)))
        completion = await complete_nonempty(
            self.model, self.prompt_for(view), settings, empty_retries=self.empty_retries
        )
        return completion.message
