"""A `generate: false` response: the turn is set up and recorded, but the model is not run.

WebSocket clients send one to warm a connection up (validate the tools and instructions,
load the history) and get a response id to chain the first real turn from.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from loom.engine.events import Event, EventSequencer
from loom.engine.loop import Turn
from loom.engine.usage import UsageTotals


async def warmup_turn(turn: Turn) -> AsyncIterator[Event]:
    seq = EventSequencer()
    response = turn.response
    yield seq.response_event("response.created", {**response, "output": []})
    yield seq.response_event("response.in_progress", {**response, "output": []})
    response.update(
        status="completed",
        completed_at=int(time.time()),
        usage=UsageTotals().as_response_usage(),
    )
    yield seq.response_event("response.completed", response)
