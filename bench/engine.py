"""CPU that Loom's own engine spends on one streamed turn, with no network and no storage.

It runs the agent loop over an in-memory provider that yields a 64-delta answer and
serializes every event as the SSE writer does. Comparing this with `bench.responses`'s
"Loom CPU per response" shows how much of Loom's cost is its own code and how much is the
HTTP client, the server framework and storage.

    .venv/bin/python -m bench.engine [--turns N]
"""

from __future__ import annotations

import argparse
import asyncio
import time

from loom.api.sse import typed_event_bytes
from loom.engine.loop import Turn, run_turn
from loom.engine.request import CreateResponse, response_skeleton
from loom.inference.registry import ResolvedModel
from loom.testing import Reply, reply_chunks
from loom.tools.toolset import build_toolset

CHUNKS = reply_chunks(Reply(text=" ".join(["word"] * 64)), "bench-model")


class InMemoryProvider:
    name = "mem"
    base_url = "mem://"

    async def stream_chat(self, body):
        for chunk in CHUNKS:
            yield chunk


async def run(turns: int) -> tuple[float, int]:
    request = CreateResponse(model="mem/bench-model", input="hi")
    toolset = build_toolset(None, None)
    model = ResolvedModel(InMemoryProvider(), "bench-model")
    events = 0
    start = time.process_time()
    for _ in range(turns):
        turn = Turn(
            response=response_skeleton(
                request, response_id="resp_bench", created_at=0, tools=[], tool_choice="auto"
            ),
            model=model,
            messages=[{"role": "user", "content": "hi"}],
            params={},
            toolset=toolset,
            max_tool_calls=None,
            parallel_tool_calls=True,
        )
        async for event in run_turn(turn):
            typed_event_bytes(event)
            events += 1
    return (time.process_time() - start) / turns * 1000, events // turns


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=2000)
    args = parser.parse_args()
    ms, events = asyncio.run(run(args.turns))
    print(f"engine CPU per turn: {ms:.3f} ms ({len(CHUNKS)} upstream chunks, {events} events)")


if __name__ == "__main__":
    main()
