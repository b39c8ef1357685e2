"""The model seam: the one interface between actors and language models.

A `ChatModel` turns a list of messages into one `Completion`. Actors depend
only on this protocol; `convo_sim._openai_model.OpenAIChatModel` is the
adapter for OpenAI-compatible servers (OpenAI, vLLM, the bundled
`convo-sim serve`), and tests can pass any object with a matching
`complete` coroutine.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from convo_sim._errors import EmptyReplyError
from convo_sim._logging import get_logger
from convo_sim._messages import Message
from convo_sim._results import Usage

__all__ = ["ChatModel", "Completion", "ModelSettings", "complete_nonempty"]

_log = get_logger("convo_sim.models")


class ModelSettings(BaseModel):
    """Sampling settings for one request; `None` means the server's default.

    Attributes:
        model: overrides the model name the adapter was built with.
        temperature: sampling temperature.
        top_p: nucleus sampling mass.
        max_tokens: the most tokens to generate.
        seed: asks the server for reproducible sampling, where supported.
        stop: sequences that end generation, where supported.
        extra: provider-specific request fields, sent as they are (for
            example vLLM's `top_k`).
        tools: the functions the model may call, as OpenAI `tools` entries
            (chat-completions or Responses shape; each API gets its own);
            None: no tools are sent.
        capture_tokens: ask the server for the reply's token ids and
            logprobs (chat completions, vLLM's fields) and keep them, with
            the prompt's ids, in the reply's metadata; a reply without
            them fails with `TokenCaptureError` (see docs/training-data.md).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = Field(default=None, gt=0)
    seed: int | None = None
    stop: tuple[str, ...] | None = None
    extra: Mapping[str, Any] = Field(default_factory=dict)
    capture_tokens: bool | None = None
    tools: tuple[Mapping[str, Any], ...] | None = None

    def merged(self, override: ModelSettings | None) -> ModelSettings:
        """These settings with every field `override` sets replacing ours.

        `extra` dicts are merged key by key, the override winning.
        """
        if override is None:
            return self
        update: dict[str, Any] = {
            name: getattr(override, name)
            for name in override.model_fields_set
            if name != "extra" and getattr(override, name) is not None
        }
        if override.extra:
            update["extra"] = {**self.extra, **override.extra}
        return self.model_copy(update=update) if update else self


class Completion(BaseModel):
    """One model reply.

    Attributes:
        message: the reply, role `assistant`; its `metadata["usage"]` holds
            the token usage as a plain dict, which is what the orchestrator
            sums into `DialogueResult.usage`.
        usage: the token usage reported by the server.
        finish_reason: why generation stopped (`stop`, `length`, ...).
        id: the server's id for the reply, if any.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    message: Message
    usage: Usage = Field(default_factory=Usage)
    finish_reason: str | None = None
    id: str | None = None

    @property
    def empty(self) -> bool:
        """True when the reply has neither text nor tool calls."""
        return not self.message.text.strip() and not self.message.tool_calls


@runtime_checkable
class ChatModel(Protocol):
    """Anything that completes a chat: the seam between actors and LLMs."""

    async def complete(self, messages: Sequence[Message], settings: ModelSettings) -> Completion:
        """Return the model's reply to `messages`.

        Raises:
            ModelError: the request failed for good (after any retries).
        """
        ...


async def complete_nonempty(
    model: ChatModel,
    messages: Sequence[Message],
    settings: ModelSettings,
    *,
    empty_retries: int = 2,
) -> Completion:
    """Ask `model` again (at most `empty_retries` times) while it replies with nothing.

    The returned completion's usage, and its message's `metadata["usage"]`,
    include the tokens spent on the discarded empty replies: they were paid for.

    Raises:
        EmptyReplyError: every attempt came back empty.
        ModelError: a request failed for good.
    """
    attempts = empty_retries + 1
    completion = await model.complete(messages, settings)
    if not completion.empty:
        return completion  # the usual case: nothing discarded, nothing to add up
    _log.warning("model.empty_reply", attempt=1, attempts=attempts)
    spent = completion.usage
    for attempt in range(2, attempts + 1):
        completion = await model.complete(messages, settings)
        spent = spent + completion.usage
        if completion.empty:
            _log.warning("model.empty_reply", attempt=attempt, attempts=attempts)
            continue
        if spent == completion.usage:
            return completion
        metadata = {**completion.message.metadata, "usage": spent.model_dump()}
        return completion.model_copy(
            update={
                "usage": spent,
                "message": completion.message.model_copy(update={"metadata": metadata}),
            }
        )
    raise EmptyReplyError(
        f"the model replied with no content {attempts} time(s) in a row", attempts=attempts
    )
