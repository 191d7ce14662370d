"""CPU that metrics, request ids, tracing-off and the stall guard add to one streamed response.

    .venv/bin/python -m bench.observability

`bench.responses` measures whole responses through three processes, and on a shared
machine its CPU figures move by more than these costs. This measures only the added work,
in one process, with no network: the request middleware around a do-nothing ASGI app
(minus the app alone), one turn's observation (in-flight gauge, final status, tokens,
the no-op trace, the store-write wrapper), one model call's timer, two database-operation
observations, and the stall guard's bookkeeping for a 66-chunk stream.
"""

from __future__ import annotations

import asyncio
import time

from loom.observability.http import RequestObservabilityMiddleware
from loom.observability.metrics import DB_LATENCY
from loom.observability.turns import ModelCallTimer, TurnObservation

CHUNKS = 66  # 64 content chunks, a finish chunk and a usage chunk, as bench.fake_upstream
ROUNDS = 5000

_SCOPE = {
    "type": "http",
    "method": "POST",
    "path": "/v1/responses",
    "headers": [(b"content-type", b"application/json")],
}


async def _app(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


async def _send(message):
    pass


async def _receive():
    return {"type": "http.request", "body": b""}


async def _per_request(app) -> float:
    started = time.process_time()
    for _ in range(ROUNDS):
        await app(dict(_SCOPE), _receive, _send)
    return (time.process_time() - started) / ROUNDS


async def _per_turn() -> float:
    response = {
        "id": "resp_x",
        "status": "completed",
        "usage": {"input_tokens": 11, "output_tokens": 64},
    }

    async def persist(_):
        pass

    read, write = DB_LATENCY.labels("read"), DB_LATENCY.labels("write")
    started = time.process_time()
    for _ in range(ROUNDS):
        observed = TurnObservation("resp_x", "openai/bench-model")
        timer = ModelCallTimer("openai", "bench-model")
        timer.first_token()
        timer.done(True)
        await observed.saving(persist)(response)
        read.observe(0.001)
        write.observe(0.001)
    return (time.process_time() - started) / ROUNDS


async def _stall_guard_per_stream() -> float:
    from loom.inference.stall_guard import StallGuard

    started = time.process_time()
    for _ in range(ROUNDS // 10):
        guard = StallGuard()
        for _ in range(CHUNKS):
            guard.wait(60.0)
            guard.done()
        guard.close()
    return (time.process_time() - started) / (ROUNDS // 10)


async def main() -> None:
    bare = await _per_request(_app)
    wrapped = await _per_request(RequestObservabilityMiddleware(_app))
    middleware = wrapped - bare
    turn = await _per_turn()
    guard = await _stall_guard_per_stream()
    total = middleware + turn + guard
    print(f"request middleware (request id, route metrics): {middleware * 1e3:.4f} ms/request")
    print(f"turn + model call + 2 DB observations:          {turn * 1e3:.4f} ms/response")
    print(f"stall guard, {CHUNKS} chunks:                          {guard * 1e3:.4f} ms/response")
    print(f"total added per streamed response:              {total * 1e3:.4f} ms of CPU")


if __name__ == "__main__":
    asyncio.run(main())
