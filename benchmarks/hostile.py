"""What hostile peers cost the HTTP path: the numbers behind benchmarks/README.md.

    .venv/bin/python benchmarks/hostile.py                  # both sides, this tree
    .venv/bin/python benchmarks/hostile.py --only server --server-python OTHER/.venv/bin/python

Client side (the lean transport against a raw socket server in this
process): a reply in 1-byte chunks, an endless chunked reply and a chunk
size of `-6`, each timed to its end (a reply or an error), with the
client's peak RSS. Server side (`convo-sim serve` in a process of its own,
started with `--server-python`, so another checkout's server can be
measured the same way): one big calendar-user request and, while it is
worked on, `GET /v1/models`; then six concurrent 30 MB bodies, with the
server's RSS before and after.

Everything talks to 127.0.0.1; every step has a time limit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

SERVE = "import sys; from convo_sim.cli import main; sys.exit(main())"
STEP_LIMIT = 60.0


# -- client side -------------------------------------------------------------------


async def raw_server(reply: Callable[[asyncio.StreamWriter], Awaitable[None]]) -> asyncio.Server:
    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            await reader.readexactly(length)
            await reply(writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(connection, "127.0.0.1", 0)


CHUNKED = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"


def completion(text: str) -> bytes:
    return json.dumps(
        {"id": "c", "choices": [{"index": 0, "message": {"role": "assistant", "content": text}}]}
    ).encode()


async def one_byte_chunks(writer: asyncio.StreamWriter) -> None:
    body = completion("y" * (2 * 1024 * 1024))
    writer.write(CHUNKED)
    for start in range(0, len(body), 4096):
        piece = body[start : start + 4096]
        writer.write(b"".join(b"1\r\n%s\r\n" % piece[i : i + 1] for i in range(len(piece))))
        await writer.drain()
    writer.write(b"0\r\n\r\n")
    await writer.drain()


async def endless_chunks(writer: asyncio.StreamWriter) -> None:
    writer.write(CHUNKED)
    piece = b"x" * 65536
    while True:
        writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        await writer.drain()


async def negative_chunk(writer: asyncio.StreamWriter) -> None:
    writer.write(CHUNKED + b"-6\r\nabcdef\r\n0\r\n\r\n")
    await writer.drain()


CASES = {
    "one-byte": ("2 MB reply in 1-byte chunks", one_byte_chunks),
    "endless": ("endless chunked reply", endless_chunks),
    "negative": ("chunk size -6", negative_chunk),
}


async def client_side(cases: list[str]) -> list[str]:
    from convo_sim._fast_chat import FastChatTransport

    request = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    lines = []
    for name, reply in (CASES[case] for case in cases):
        server = await raw_server(reply)
        port = server.sockets[0].getsockname()[1]
        transport = FastChatTransport(
            f"http://127.0.0.1:{port}/v1", api_key="unused", timeout=STEP_LIMIT
        )
        started = time.perf_counter()
        try:
            done = await transport.complete(request)
            outcome = f"read, {len(done.message.content or '')} characters"
        except Exception as exc:
            outcome = f"{type(exc).__name__}: {str(exc)[:60]}"
        took = time.perf_counter() - started
        await transport.aclose()
        server.close()
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        lines.append(f"| {name} | {took:.2f} s | {outcome} | {rss:.0f} MB |")
    return lines


# -- server side -------------------------------------------------------------------


def big_user_request(turns: int) -> bytes:
    from convo_sim.scenarios import bundled_scenarios
    from convo_sim.users._llm import user_system_prompt

    scenario = next(s for s in bundled_scenarios("calendar_examples") if s.goal is not None)
    assert scenario.goal is not None
    card = {"id": scenario.id, "goal": json.loads(scenario.goal.model_dump_json()), "seed": 1}
    messages = [{"role": "system", "content": user_system_prompt("g", scenario_card=card)}]
    for i in range(turns):
        messages.append({"role": "assistant", "content": f"Please add meeting {i} for me. " * 3})
        messages.append({"role": "user", "content": "Your calendar is empty so far. " * 3})
    return json.dumps({"model": "calendar-user", "messages": messages}).encode()


def server_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):  # the peak resident set
            return int(line.split()[1]) / 1024
    return float("nan")


async def server_side(python: str) -> list[str]:
    import aiohttp

    # From the checkout that owns that venv (CHECKOUT/.venv/bin/python), so
    # `python -c` imports its convo_sim, not this directory's.
    checkout = Path(python).parent.parent.parent
    process = await asyncio.create_subprocess_exec(
        python, "-c", SERVE, "serve", "--port", "0", stdout=subprocess.PIPE, cwd=checkout
    )
    lines = []
    try:
        assert process.stdout is not None
        url = (await process.stdout.readline()).decode().split()[2]
        timeout = aiohttp.ClientTimeout(total=STEP_LIMIT)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            async with session.get(f"{url}/models") as warm:
                await warm.read()
            body = big_user_request(3000)
            started = time.perf_counter()

            async def big() -> tuple[int, float]:
                async with session.post(
                    f"{url}/chat/completions",
                    data=body,
                    headers={"Content-Type": "application/json"},
                ) as response:
                    await response.read()
                    return response.status, time.perf_counter() - started

            async def models() -> float:
                await asyncio.sleep(0.05)  # the big request is in by then
                sent = time.perf_counter()
                async with session.get(f"{url}/models") as response:
                    await response.read()
                return time.perf_counter() - sent

            (status, big_s), models_s = await asyncio.gather(big(), models())
            lines.append(
                f"| one {len(body) / 1e6:.2f} MB request (calendar-user, 6,001 messages) "
                f"| HTTP {status} in {big_s:.2f} s | `GET /v1/models` meanwhile: "
                f"{1000 * models_s:.0f} ms |"
            )
            for megabytes in (30, 7.5):
                before = server_rss_mb(process.pid)
                payload = b'{"model": "echo", "messages": [{"role": "user", "content": "'
                payload += b"z" * int(megabytes * 1024 * 1024) + b'"}]}'

                async def huge(payload: bytes = payload) -> int:
                    async with session.post(f"{url}/chat/completions", data=payload) as response:
                        await response.read()
                        return response.status

                statuses = await asyncio.gather(*(huge() for _ in range(6)), return_exceptions=True)
                shown = ", ".join(
                    str(s) if isinstance(s, int) else type(s).__name__ for s in statuses
                )
                lines.append(
                    f"| six concurrent {megabytes:g} MB bodies | HTTP {shown} | server peak RSS "
                    f"{before:.0f} -> {server_rss_mb(process.pid):.0f} MB |"
                )
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 10)
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--server-python", default=sys.executable)
    parser.add_argument("--only", choices=["client", "server"])
    parser.add_argument(
        "--cases",
        default=",".join(CASES),
        help="client cases, comma-separated (default: all; the hand-written parser "
        "this replaced never returned from `endless` or `negative`)",
    )
    args = parser.parse_args()
    if args.only != "server":
        print("| client: reply | until its end | outcome | client peak RSS |")
        print("|---|---:|---|---:|")
        print(
            "\n".join(
                asyncio.run(asyncio.wait_for(client_side(args.cases.split(",")), 4 * STEP_LIMIT))
            )
        )
    if args.only != "client":
        print(f"\nserver: {args.server_python}\n")
        print("| server: request | answer | the others |")
        print("|---|---|---|")
        print(
            "\n".join(
                asyncio.run(asyncio.wait_for(server_side(args.server_python), 4 * STEP_LIMIT))
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
