"""CPU per request of the bare HTTP clients, against the canned server.

    .venv/bin/python benchmarks/clients.py [--requests 12800] [--repeat 5]

Each client makes the same POST (the benchmark's 6-message user request)
from 64 tasks at once to `convo-sim serve --canned` in a process of its
own, and reports its process CPU time per request over the timed part
(after 20 untimed requests per task). Clients: `lean` (this checkout's
`FastHTTPClient`), `aiohttp` (a bare `ClientSession`, the baseline's
client) and `sdk` (the `openai` client's `post`). Each measurement runs in
a fresh process; the clients alternate and the least CPU of `--repeat`
runs is kept (other processes on a shared machine only ever add to it).
Run it from another checkout to measure that checkout's `lean`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SERVE = "import sys; from convo_sim.cli import main; sys.exit(main())"
TASKS = 64
MESSAGES = [{"role": "system", "content": "You are role-playing a user. " * 25}] + [
    {"role": "user" if i % 2 else "assistant", "content": "Please add lunch at noon."}
    for i in range(5)
]
BODY = json.dumps({"model": "canned", "messages": MESSAGES}).encode()


async def measure(url: str, client: str, requests: int) -> dict[str, float]:
    post: Any
    if client == "lean":
        from convo_sim._fast_http import FastHTTPClient

        lean = FastHTTPClient(url)

        async def post() -> bytes:
            return (await lean.post("/chat/completions", BODY)).body

        close = lean.aclose
    elif client == "aiohttp":
        import aiohttp

        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1000))
        headers = {"Content-Type": "application/json"}

        async def post() -> bytes:
            async with session.post(f"{url}/chat/completions", data=BODY, headers=headers) as r:
                r.raise_for_status()
                return await r.read()

        close = session.close
    else:
        import openai

        sdk = openai.AsyncOpenAI(base_url=url, api_key="unused", max_retries=0)
        request = json.loads(BODY)

        async def post() -> bytes:
            return await sdk.post("/chat/completions", body=request, cast_to=bytes)  # type: ignore[no-any-return]

        close = sdk.close

    async def worker(count: int) -> None:
        for _ in range(count):
            await post()

    await asyncio.gather(*(worker(20) for _ in range(TASKS)))
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(requests // TASKS) for _ in range(TASKS)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    await close()
    done = TASKS * (requests // TASKS)
    return {"cpu_us": 1e6 * cpu / done, "per_s": done / wall}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=12_800)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--clients", default="lean,aiohttp,sdk")
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        url, client = args.worker
        print(json.dumps(asyncio.run(measure(url, client, args.requests))))
        return 0
    clients = args.clients.split(",")
    server = subprocess.Popen(
        [sys.executable, "-c", SERVE, "serve", "--port", "0", "--canned"],
        stdout=subprocess.PIPE,
        text=True,
    )
    best: dict[str, dict[str, float]] = {}
    try:
        assert server.stdout is not None
        url = server.stdout.readline().split()[2]
        for _ in range(args.repeat):
            for client in clients:
                command = [sys.executable, __file__, "--worker", url, client]
                done = subprocess.run(
                    [*command, "--requests", str(args.requests)],
                    capture_output=True,
                    text=True,
                    timeout=600,
                    check=True,
                    cwd=Path.cwd(),
                )
                result = json.loads(done.stdout.strip().splitlines()[-1])
                print(
                    f"  {client:<8} {result['cpu_us']:7.1f} us CPU/request "
                    f"{result['per_s']:8.0f} requests/s",
                    file=sys.stderr,
                )
                if client not in best or result["cpu_us"] < best[client]["cpu_us"]:
                    best[client] = result
    finally:
        server.terminate()
        server.wait(timeout=10)
    print(f"| client | CPU us per request (least of {args.repeat}) | requests/s |")
    print("|---|---:|---:|")
    for client in clients:
        print(f"| {client} | {best[client]['cpu_us']:.1f} | {best[client]['per_s']:,.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
