"""`convo-sim serve`: the bundled OpenAI-compatible server, offline, no key needed.

Serves every installed domain's rule-based actors as models (the
calendar's `calendar-solver` and `calendar-user`) and `echo`, so that the
LLM path runs end to end without network (`--domain NAME`: only that
domain's, and `echo`)::

    convo-sim serve --port 8000
    convo-sim run --assistant openai:calendar-solver --user openai:calendar-user \\
        --base-url http://127.0.0.1:8000/v1

With `--port 0` a free port is chosen; the first line on standard output
always names the URL, so scripts can read it. `--idle-timeout` closes
connections idle that long (default 10 s; also the time a request's head
may take to arrive). `--canned [TEXT]` serves one
model, `canned`, that answers TEXT to everything, after `--latency-ms`:
what `benchmarks/run.py` measures clients against. `--prefill-us-per-token
US` adds US microseconds per prompt token that is not in the server's
prefix cache (an LRU of `--prefix-cache-tokens` tokens, in blocks of 16),
as a server with prefix caching spends on prefill: several such servers
are replicas on which routing by dialogue pays off measurably. `GET
/metrics` shows the cache's counters.

Every model's chat completions carry token ids and logprobs when asked, as
vLLM's do (`convo_sim._server_tokens`); `--token-drift` makes generations
re-tokenize differently, and `--ignore-token-ids` ignores the ids a client
passes back, as stock vLLM does (see docs/training-data.md).
"""

from __future__ import annotations

import argparse
from typing import Any

import anyio

from convo_sim._canned import CANNED_MODEL, CannedModel, PrefixCache
from convo_sim._errors import InputError
from convo_sim._served_models import EchoModel, ServedModel
from convo_sim._server import ModelServer, ServerLimits
from convo_sim._server_tokens import TokenOptions
from convo_sim.cli.domain import domain_of

__all__ = ["add_parser", "run"]

_DEFAULTS = ServerLimits()


def add_parser(sub: Any) -> None:
    """Register `serve` with the CLI's sub-command parser."""
    p: argparse.ArgumentParser = sub.add_parser(
        "serve",
        help="serve the rule-based actors over an OpenAI-compatible HTTP API",
        description=(
            "Serve every installed domain's rule-based actors (the calendar's calendar-solver "
            "and calendar-user) and echo as models of an OpenAI-compatible API on 127.0.0.1: "
            "/v1/models, /v1/chat/completions and /v1/responses, plain and streamed. "
            "Point --base-url at it to run the whole HTTP path offline."
        ),
    )
    p.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, loopback only)"
    )
    p.add_argument(
        "--port", type=int, default=8000, help="port to bind; 0 picks a free one (default: 8000)"
    )
    p.add_argument(
        "--canned",
        metavar="TEXT",
        nargs="?",
        const="ok",
        default=None,
        help="serve only the model 'canned', which answers TEXT (default: ok) to every "
        "request; for benchmarking clients",
    )
    p.add_argument(
        "--latency-ms",
        type=float,
        default=0.0,
        help="with --canned: wait this many milliseconds before every reply (default: 0)",
    )
    p.add_argument(
        "--prefill-us-per-token",
        type=float,
        default=0.0,
        metavar="US",
        help="with --canned: also wait this many microseconds per prompt token not in the "
        "server's prefix cache, as prefill would take (default: 0, no cache)",
    )
    p.add_argument(
        "--prefix-cache-tokens",
        type=int,
        default=2_000_000,
        metavar="N",
        help="with --prefill-us-per-token: the prefix cache's size in tokens, least recently "
        "used dropped first (default: 2000000)",
    )
    p.add_argument(
        "--idle-timeout",
        type=float,
        default=_DEFAULTS.idle_timeout,
        metavar="SECONDS",
        help="close connections idle this long, and requests whose head takes longer "
        f"(default: {_DEFAULTS.idle_timeout:g})",
    )
    p.add_argument(
        "--token-drift",
        action="store_true",
        help="generate token ids in a segmentation the tokenizer never produces, so that "
        "re-tokenizing an earlier reply changes its ids unless the client passes them back",
    )
    p.add_argument(
        "--ignore-token-ids",
        action="store_true",
        help="ignore the token ids a client passes back on earlier assistant messages "
        "(as stock vLLM does) and template the whole history",
    )
    p.add_argument(
        "--domain",
        metavar="NAME",
        default=None,
        help="serve only this domain's models, and echo (default: every installed domain's)",
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted; returns the exit code.

    Raises:
        InputError: the port is out of range, the address cannot be bound, or
            the domain is unknown.
    """
    if not 0 <= args.port <= 65535:
        raise InputError(f"--port must be between 0 and 65535, got {args.port!r}")
    latency_ms = getattr(args, "latency_ms", 0.0)
    canned = getattr(args, "canned", None)
    if not 0 <= latency_ms < 3_600_000:
        raise InputError(f"--latency-ms must be between 0 and 3600000, got {latency_ms!r}")
    if latency_ms and canned is None:
        raise InputError("--latency-ms applies to the canned model: add --canned")
    idle_timeout = getattr(args, "idle_timeout", _DEFAULTS.idle_timeout)
    if not 0 < idle_timeout <= 86_400:
        raise InputError(
            f"--idle-timeout must be between 0 and 86400 seconds, got {idle_timeout!r}"
        )
    prefill_us = getattr(args, "prefill_us_per_token", 0.0)
    cache_tokens = getattr(args, "prefix_cache_tokens", 2_000_000)
    if not 0 <= prefill_us <= 1_000_000:
        raise InputError(
            f"--prefill-us-per-token must be between 0 and 1000000, got {prefill_us!r}"
        )
    if prefill_us and canned is None:
        raise InputError("--prefill-us-per-token applies to the canned model: add --canned")
    if not 16 <= cache_tokens <= 10**9:
        raise InputError(
            f"--prefix-cache-tokens must be between 16 and 1000000000, got {cache_tokens!r}"
        )
    models: dict[str, ServedModel] | None = None  # every domain's
    if canned is not None:
        if getattr(args, "domain", None) is not None:
            raise InputError("--canned serves only the canned model: drop --domain")
        cache = PrefixCache(cache_tokens) if prefill_us else None
        model = CannedModel(
            canned, latency=latency_ms / 1000, prefix_cache=cache, per_token=prefill_us / 1e6
        )
        models = {CANNED_MODEL: model}
    elif getattr(args, "domain", None) is not None:
        models = {"echo": EchoModel(), **domain_of(args).served_models()}
    limits = ServerLimits(idle_timeout=idle_timeout)
    tokens = TokenOptions(
        drift=getattr(args, "token_drift", False),
        honour_token_ids=not getattr(args, "ignore_token_ids", False),
    )
    server = ModelServer(models, host=args.host, port=args.port, limits=limits, tokens=tokens)

    class Announce:
        # Stands in for a task group's TaskStatus: serving directly (not
        # under tg.start) lets a bind error surface as a plain OSError.
        def started(self, value: object = None) -> None:
            models = ", ".join(sorted(server.models))
            print(f"convo-sim serve: {server.base_url} (models: {models})", flush=True)

    try:
        anyio.run(lambda: server.serve(task_status=Announce()))
    except OSError as exc:
        raise InputError(
            f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}"
        ) from None
    return 0
