"""The exception tree of convo-sim.

::

    ConvoSimError                    base of everything convo-sim raises on purpose
    ├── InputError                   bad input from a user: a file, a flag, a value
    │   ├── ScenarioError            a scenario file or record is malformed
    │   └── UnknownDomainError       no domain of that name is installed
    ├── ScriptExhausted              a scripted actor was asked for more than its script
    ├── RolloutError                 building or running one rollout failed (a factory raised)
    └── ModelError                   a model call failed for good (after retries)
        ├── EmptyReplyError          the model kept answering with nothing
        └── TokenCaptureError        token capture was asked for; the reply has no tokens

Errors carry their data as fields (`exc.path`, `exc.line`, `exc.status_code`)
so that callers and tests need not parse messages. Messages name the
offending value with `!r` and, where one exists, the fix.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "ConvoSimError",
    "EmptyReplyError",
    "InputError",
    "ModelError",
    "RolloutError",
    "ScenarioError",
    "ScriptExhausted",
    "TokenCaptureError",
    "UnknownDomainError",
]


class ConvoSimError(Exception):
    """Base class of the errors convo-sim raises on purpose."""


class InputError(ConvoSimError):
    """Bad input from a user. The CLI prints `str(exc)` on one line and exits 2.

    Attributes:
        path: the file at fault, if any.
        line: the 1-based line at fault, if known.
        problem: what was wrong and what was expected.
    """

    def __init__(self, problem: str, *, path: str | Path | None = None, line: int | None = None):
        self.path = None if path is None else str(path)
        self.line = line
        self.problem = problem
        where = ""
        if self.path is not None:
            where = f"{self.path}:{line}: " if line is not None else f"{self.path}: "
        super().__init__(f"{where}{problem}")


class ScenarioError(InputError):
    """A scenario file or record is malformed.

    Attributes:
        scenario_id: the scenario at fault, when one is known.
    """

    def __init__(
        self,
        problem: str,
        *,
        path: str | Path | None = None,
        line: int | None = None,
        scenario_id: str | None = None,
    ):
        self.scenario_id = scenario_id
        super().__init__(problem, path=path, line=line)


class UnknownDomainError(InputError):
    """No domain of that name is installed (or it failed to load).

    Attributes:
        name: the name asked for.
        known: the domains that are installed, sorted.
    """

    def __init__(self, name: str, known: list[str], *, reason: str | None = None) -> None:
        self.name = name
        self.known = known
        if reason is not None:
            problem = f"domain {name!r} failed to load: {reason}"
        else:
            problem = f"unknown domain {name!r}; expected one of: {', '.join(known) or 'none'}"
        super().__init__(problem)


class ScriptExhausted(ConvoSimError):
    """A scripted actor was asked to speak after its script ran out.

    Attributes:
        length: how many messages the script held.
    """

    def __init__(self, length: int) -> None:
        self.length = length
        super().__init__(f"the script's {length} message(s) are used up")


class RolloutError(ConvoSimError):
    """Setting up or running one rollout failed outside the dialogue.

    A failing actor is recorded in the rollout; this is raised when an actor
    or verifier factory raises, or `run_dialogue` rejects its arguments. The
    original exception is the `__cause__`.

    Attributes:
        scenario_id: the scenario of the failed rollout.
        sample_index: its sample index.
        problem: what went wrong (the original exception's type and text).
    """

    def __init__(self, scenario_id: str, sample_index: int, problem: str) -> None:
        self.scenario_id = scenario_id
        self.sample_index = sample_index
        self.problem = problem
        super().__init__(f"rollout ({scenario_id!r}, sample {sample_index}) failed: {problem}")

    def __reduce__(self) -> tuple[type[RolloutError], tuple[str, int, str]]:
        # Raised in Ray workers and re-raised in the driver, so it must
        # unpickle from its fields, not from the formatted message.
        return (type(self), (self.scenario_id, self.sample_index, self.problem))


class ModelError(ConvoSimError):
    """A model call failed for good, after any retries.

    Attributes:
        status_code: the HTTP status, when the server answered.
        attempts: how many attempts were made.
    """

    def __init__(self, message: str, *, status_code: int | None = None, attempts: int = 1):
        self.status_code = status_code
        self.attempts = attempts
        super().__init__(message)


class EmptyReplyError(ModelError):
    """The model answered with no content, on every attempt."""


class TokenCaptureError(ModelError):
    """Token capture was asked for, and the server's reply does not carry the tokens.

    Never retried: the same server answers the same way. The dialogue ends
    as `assistant_error`, so a capturing run writes no text-only turns.

    Attributes:
        missing: the field the reply lacks or garbles (`prompt_token_ids`,
            `generation_token_ids`, `generation_log_probs`), or `api` when
            capture was asked of the Responses API.
    """

    def __init__(self, message: str, *, missing: str, attempts: int = 1) -> None:
        self.missing = missing
        super().__init__(message, attempts=attempts)
