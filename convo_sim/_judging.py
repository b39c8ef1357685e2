"""LLM judges through the `ChatModel` seam: payloads, answers, retries, a cache.

A judge is a chat model asked to grade something and answer in JSON. What
every judge here shares:

* **A pinned, versioned prompt.** Each judge's instructions are a constant
  with a version (`rubric-judge/1`, ...), recorded with every verdict, so
  a change of prompt is a change of version, and cached answers of one
  version never answer another.
* **Data apart from instructions.** What is judged (a dialogue, a reply)
  goes into the user message as one line of JSON between
  `<convo-sim-judge>` tags (`format_judge_payload`). `<`, `>` and `&` are
  written as JSON escapes, so no text in the data can close the tag or
  open another, and the prompt tells the judge that instructions inside
  the data are data. A rule-based judge served by `convo-sim serve` reads
  the same payload back (`parse_judge_payload`).
* **JSON-schema output.** The request asks for the answer's JSON schema
  (`response_format`, which OpenAI and vLLM honour); the reply is validated
  with pydantic whatever the server did. An answer that is not valid
  (no JSON object, a field missing or out of range) is asked for again
  under a `RetryPolicy` (logged as `model.retry`); if it never comes, the
  judge reports failure as data: a score of 0 with the reason, never an
  exception. Transport failures are retried by the model adapter itself,
  once, not here again.
* **A cache by content hash.** `JudgeCache` keys an answer on the SHA-256
  of the prompt version, the model and the exact messages and settings
  sent; the same question is never paid for twice (in memory, and in a
  JSONL file when given one, so that it survives the process).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from convo_sim._errors import ConvoSimError
from convo_sim._logging import get_logger
from convo_sim._messages import Message
from convo_sim._models import ChatModel, ModelSettings
from convo_sim._retry import RetryPolicy, Transient

__all__ = [
    "DEFAULT_JUDGE_RETRY",
    "JUDGE_TAG",
    "InvalidJudgeAnswer",
    "JudgeCache",
    "JudgeOutcome",
    "ask_judge",
    "format_judge_payload",
    "judge_settings",
    "parse_judge_answer",
    "parse_judge_payload",
    "response_format",
    "strip_think",
]

_log = get_logger("convo_sim.judging")

JUDGE_TAG = "convo-sim-judge"
"""The tag around the data a judge is given, in its user message."""

_OPEN = f"<{JUDGE_TAG}>"
_CLOSE = f"</{JUDGE_TAG}>"
_THINK = re.compile(r"<think>.*?(?:</think>|\Z)", re.IGNORECASE | re.DOTALL)
_FENCE = re.compile(r"^\s*```(?:json)?\s*|\s*```\s*$", re.IGNORECASE)

A = TypeVar("A", bound=BaseModel)


DEFAULT_JUDGE_RETRY = RetryPolicy(attempts=3, initial=0.0, max_wait=0.0, jitter=0.0)
"""Three attempts at a valid answer, without waiting: an invalid answer is no overload."""


def judge_settings(answer_type: type[BaseModel], name: str) -> ModelSettings:
    """A judge's default settings: temperature 0 and the answer's JSON schema."""
    return ModelSettings(
        temperature=0.0, extra={"response_format": response_format(answer_type, name)}
    )


def format_judge_payload(data: Mapping[str, Any]) -> str:
    """`data` as one line of JSON between the judge tags, safe from the text it holds."""
    text = json.dumps(dict(data), ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    # JSON escapes of the markup characters: the data cannot close the tag.
    text = text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
    return f"{_OPEN}{text}{_CLOSE}"


def parse_judge_payload(text: str) -> dict[str, Any] | None:
    """The payload in a judge's message, or None if it holds none.

    Raises:
        ValueError: the tags are there but hold no JSON object.
    """
    start = text.find(_OPEN)
    if start < 0:
        return None
    end = text.find(_CLOSE, start)
    if end < 0:
        raise ValueError(f"the judge payload has no closing {_CLOSE} tag")
    data = json.loads(text[start + len(_OPEN) : end])
    if not isinstance(data, dict):
        raise ValueError(f"the judge payload must be a JSON object, got {type(data).__name__}")
    return data


def strip_think(text: str) -> str:
    """`text` without `<think>` blocks (an unclosed one runs to the end)."""
    return _THINK.sub("", text)


class InvalidJudgeAnswer(ConvoSimError):
    """The judge's reply is not a valid answer (retried, then reported as data)."""


def parse_judge_answer(text: str, answer_type: type[A]) -> A:
    """Read a judge's reply as `answer_type`: the JSON object in it, validated.

    Hidden reasoning (`<think>`) and a code fence around the object are
    allowed; anything else must be the object itself.

    Raises:
        InvalidJudgeAnswer: no JSON object, or one that does not validate.
    """
    visible = _FENCE.sub("", strip_think(text).strip()).strip()
    if not visible.startswith("{"):
        raise InvalidJudgeAnswer(f"the reply is not a JSON object: {visible[:80]!r}")
    try:
        return answer_type.model_validate_json(visible)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "the answer"
        raise InvalidJudgeAnswer(f"{where}: {first.get('msg', 'invalid')}") from None


def response_format(answer_type: type[BaseModel], name: str) -> dict[str, Any]:
    """The `response_format` that asks an OpenAI-compatible server for `answer_type`."""
    return {
        "type": "json_schema",
        "json_schema": {"name": name, "schema": answer_type.model_json_schema()},
    }


class JudgeCache:
    """Judge answers by content hash: in memory, and in a JSONL file when given one.

    Only valid answers are kept. The file is appended to, one line per
    answer (`{"key": ..., "answer": ...}`), and read when the cache is made;
    a torn or foreign line is skipped. Several processes may append to one
    file: each line is one `write`.

    Args:
        path: the file; None keeps answers in memory only.
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = None if path is None else Path(path)
        self._answers: dict[str, dict[str, Any]] = {}
        self.hits = 0
        self.misses = 0
        if self.path is not None and self.path.exists():
            for line in self.path.read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    entry = json.loads(line)
                    self._answers[str(entry["key"])] = dict(entry["answer"])
                except (ValueError, KeyError, TypeError):
                    continue

    @staticmethod
    def key(version: str, model: str, messages: Sequence[Message], settings: ModelSettings) -> str:
        """The SHA-256 of everything that decides the answer."""
        data = {
            "version": version,
            "model": model,
            "messages": [m.model_dump(mode="json", exclude={"metadata"}) for m in messages],
            "settings": settings.model_dump(mode="json"),
        }
        text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(text.encode()).hexdigest()

    def get(self, key: str) -> dict[str, Any] | None:
        """The answer stored under `key`, or None."""
        found = self._answers.get(key)
        if found is None:
            self.misses += 1
        else:
            self.hits += 1
        return found

    def put(self, key: str, answer: Mapping[str, Any]) -> None:
        """Keep `answer` under `key` (and append it to the file)."""
        self._answers[key] = dict(answer)
        if self.path is not None:
            line = json.dumps({"key": key, "answer": dict(answer)}, ensure_ascii=False) + "\n"
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                os.write(fd, line.encode())
            finally:
                os.close(fd)

    def __len__(self) -> int:
        return len(self._answers)


@dataclass(frozen=True, slots=True)
class JudgeOutcome(Generic[A]):
    """What asking a judge gave: the answer, or why there is none.

    Attributes:
        answer: the validated answer, or None.
        error: why there is no answer (`invalid_output: ...`,
            `model_error: ...`), or None.
        cached: the answer came from the cache.
        attempts: requests made (0 when cached).
    """

    answer: A | None = None
    error: str | None = None
    cached: bool = False
    attempts: int = 0


async def ask_judge(
    model: ChatModel,
    messages: Sequence[Message],
    answer_type: type[A],
    *,
    version: str,
    model_name: str,
    settings: ModelSettings,
    retry: RetryPolicy,
    cache: JudgeCache | None = None,
    log_fields: Mapping[str, Any] | None = None,
) -> JudgeOutcome[A]:
    """Ask `model` and return its validated answer, or the reason there is none.

    Never raises for a bad answer or a failed request: both come back as
    `error`. Cancellation passes through.

    Raises:
        Exception: only a bug of the caller's (a model that is no `ChatModel`).
    """
    key = JudgeCache.key(version, model_name, messages, settings) if cache is not None else ""
    if cache is not None:
        stored = cache.get(key)
        if stored is not None:
            try:
                return JudgeOutcome(answer=answer_type.model_validate(stored), cached=True)
            except ValidationError:
                pass  # a file from an older answer type: ask again
    attempts = 0

    async def once() -> A:
        nonlocal attempts
        attempts += 1
        completion = await model.complete(messages, settings)
        return parse_judge_answer(completion.message.text, answer_type)

    def classify(exc: Exception) -> Transient | None:
        return Transient() if isinstance(exc, InvalidJudgeAnswer) else None

    try:
        answer = await retry.call(
            once,
            classify=classify,
            give_up=lambda exc, _: exc,
            log_fields={"judge": version, **dict(log_fields or {})},
        )
    except InvalidJudgeAnswer as exc:
        _log.warning("judge.invalid_output", judge=version, attempts=attempts)
        return JudgeOutcome(error=f"invalid_output: {exc}", attempts=attempts)
    except Exception as exc:  # a failed request (ModelError); cancellation passes through
        _log.warning("judge.failed", judge=version, error=type(exc).__name__)
        return JudgeOutcome(
            error=f"model_error: {type(exc).__name__}: {exc}"[:500], attempts=attempts
        )
    if cache is not None:
        cache.put(key, answer.model_dump(mode="json"))
    return JudgeOutcome(answer=answer, attempts=attempts)
