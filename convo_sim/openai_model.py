"""The OpenAI adapter: `OpenAIChatModel`, the one `ChatModel` that talks HTTP.

Also exported as `convo_sim.OpenAIChatModel`. This is the only part of
convo-sim that imports the `openai` package.
"""

from __future__ import annotations

from convo_sim._openai_model import LOCAL_API_KEY, OpenAIChatModel

__all__ = ["LOCAL_API_KEY", "OpenAIChatModel"]
