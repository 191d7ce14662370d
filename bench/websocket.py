"""A 20-step tool-call chain over WebSocket mode against the same chain over HTTP.

    .venv/bin/python -m bench.websocket              # 7 chains per transport
    .venv/bin/python -m bench.websocket --chains 3 --steps 20

An agent's chain: the client creates a response offering one function tool; the model
(`bench.fake_upstream`, which answers any request with tools by calling the first one)
calls it; the client sends the `function_call_output` with `previous_response_id`; and so
on for `--steps` calls, then one last request with `tool_choice: none` gets the answer.
Every response is streamed, as agents such as Codex do.

- HTTP: one keep-alive `httpx.AsyncClient`; each step is a `POST /v1/responses` with
  `stream: true`, read as SSE up to `response.completed`. Loom reads the chain back from
  its store on every step.
- WebSocket: one connection to `GET /v1/responses`; each step is a `response.create`
  message, read up to `response.completed`. Loom continues from the connection's memory.
  Run with `store: true` (as HTTP) and with `store: false` (nothing written at all).

For each: the median end-to-end time of a whole chain, Loom's CPU per chain (from
/proc/<pid>/stat) and this client's CPU per chain. The goal is WebSocket at least 30%
faster end to end than HTTP, as OpenAI reports for its own WebSocket mode.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import orjson
from websockets.asyncio.client import connect

from bench.harness import Service, spawn_loom, spawn_upstream, wait_ready

MODEL = "openai/bench-model"
TOOL = {
    "type": "function",
    "name": "step",
    "description": "Run one step of the task.",
    "parameters": {"type": "object", "properties": {"step": {"type": "integer"}}},
}
COMPLETED = b'{"type":"response.completed"'
Chain = Callable[[int, bool], Awaitable[None]]


def _body(step: int, steps: int, previous: dict | None, store: bool) -> dict:
    body: dict = {"model": MODEL, "tools": [TOOL], "store": store}
    if previous is None:
        body["input"] = "Do the task, one step at a time."
        return body
    call = previous["output"][-1]
    body["previous_response_id"] = previous["id"]
    body["input"] = [
        {"type": "function_call_output", "call_id": call["call_id"], "output": f"ok {step}"}
    ]
    if step == steps:
        body["tool_choice"] = "none"
    return body


def _check_final(response: dict) -> None:
    if response["output"][-1]["type"] != "message":
        raise RuntimeError(f"the chain did not end in an answer: {response['output'][-1]}")


async def http_chain(client: httpx.AsyncClient, steps: int, store: bool) -> None:
    previous = None
    for step in range(steps + 1):
        body = {**_body(step, steps, previous, store), "stream": True}
        async with client.stream("POST", "/v1/responses", json=body) as response:
            if response.status_code != 200:
                raise RuntimeError(f"HTTP {response.status_code}: {await response.aread()}")
            async for line in response.aiter_lines():
                if line.startswith("data: " + COMPLETED.decode()):
                    previous = orjson.loads(line[6:])["response"]
    _check_final(previous)


async def ws_chain(ws, steps: int, store: bool) -> None:
    previous = None
    for step in range(steps + 1):
        message = {"type": "response.create", **_body(step, steps, previous, store)}
        await ws.send(orjson.dumps(message).decode())
        while True:
            frame = await ws.recv(decode=False)
            if frame.startswith(COMPLETED):
                previous = orjson.loads(frame)["response"]
                break
            if frame.startswith(b'{"type":"error"') or frame.startswith(
                b'{"type":"response.failed"'
            ):
                raise RuntimeError(frame.decode())
    _check_final(previous)


async def measure(name: str, loom: Service, chains: int, run: Chain, store: bool) -> dict:
    await run(3, store)  # warm-up: connections, caches, first-call costs
    walls, loom_cpu, client_cpu = [], [], []
    for _ in range(chains):
        cpu0, own0, t0 = loom.cpu_seconds(), time.process_time(), time.perf_counter()
        await run(0, store)
        walls.append(time.perf_counter() - t0)
        loom_cpu.append(loom.cpu_seconds() - cpu0)
        client_cpu.append(time.process_time() - own0)
    return {
        "name": name,
        "wall": statistics.median(walls),
        "loom_cpu": statistics.median(loom_cpu),
        "client_cpu": statistics.median(client_cpu),
    }


async def run_bench(loom: Service, steps: int, chains: int) -> list[dict]:
    results = []
    async with httpx.AsyncClient(base_url=loom.base_url, timeout=60) as client:

        async def over_http(n: int, store: bool) -> None:
            await http_chain(client, n or steps, store)

        results.append(await measure("HTTP + SSE, store=true", loom, chains, over_http, True))
    ws_url = loom.base_url.replace("http://", "ws://") + "/v1/responses"
    async with connect(ws_url, max_size=None) as ws:

        async def over_ws(n: int, store: bool) -> None:
            await ws_chain(ws, n or steps, store)

        results.append(await measure("WebSocket, store=true", loom, chains, over_ws, True))
        results.append(await measure("WebSocket, store=false", loom, chains, over_ws, False))
    return results


def report(results: list[dict], steps: int) -> None:
    base = results[0]["wall"]
    print(f"\n{steps}-step tool-call chain ({steps + 1} streamed responses), median per chain:")
    print(f"{'transport':<26}{'end to end':>12}{'vs HTTP':>10}{'Loom CPU':>11}{'client CPU':>12}")
    for r in results:
        faster = (1 - r["wall"] / base) * 100
        print(
            f"{r['name']:<26}{r['wall'] * 1000:>10.1f}ms{faster:>+9.1f}%"
            f"{r['loom_cpu'] * 1000:>9.1f}ms{r['client_cpu'] * 1000:>10.1f}ms"
        )
    best = (1 - results[1]["wall"] / base) * 100
    verdict = "meets" if best >= 30 else "misses"
    print(f"\nWebSocket (store=true) is {best:.1f}% faster end to end: {verdict} the 30% goal.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--chains", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        upstream = spawn_upstream(workdir)
        loom = spawn_loom(upstream, workdir)
        try:
            wait_ready(upstream)
            wait_ready(loom)
            results = asyncio.run(run_bench(loom, args.steps, args.chains))
        finally:
            loom.stop()
            upstream.stop()
    report(results, args.steps)


if __name__ == "__main__":
    main()
