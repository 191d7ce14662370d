"""Parse a server-sent-events byte stream from an upstream into JSON payloads.

Kept tiny and allocation-light because every upstream chunk passes through it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

DONE = b"[DONE]"


async def iter_sse_json(byte_stream: AsyncIterator[bytes]) -> AsyncIterator[Any]:
    """Yield each `data:` payload decoded with orjson, up to `[DONE]`.

    Multi-line `data:` fields are joined with newlines, as the SSE spec says. After
    `[DONE]` the rest of the body is still read, so the HTTP connection goes back to the
    pool instead of being closed mid-body.
    """
    buffer = b""
    data_lines: list[bytes] = []
    done = False
    async for block in byte_stream:
        if done:
            continue
        buffer += block
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            line = line.rstrip(b"\r")
            if not line:
                if data_lines:
                    payload = b"\n".join(data_lines)
                    data_lines = []
                    if payload == DONE:
                        done = True
                        break
                    yield orjson.loads(payload)
                continue
            if line.startswith(b"data:"):
                value = line[5:]
                data_lines.append(value[1:] if value.startswith(b" ") else value)
    if done:
        return
    tail = buffer.rstrip(b"\r")
    if tail.startswith(b"data:"):
        value = tail[5:]
        data_lines.append(value[1:] if value.startswith(b" ") else value)
    if data_lines:
        payload = b"\n".join(data_lines)
        if payload != DONE:
            yield orjson.loads(payload)
