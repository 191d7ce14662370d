"""A fast fake OpenAI-compatible upstream for benchmarks, run in its own process.

    python -m bench.fake_upstream --port 9000

It is a raw `asyncio.Protocol` HTTP/1.1 server (keep-alive, no framework) whose every
answer is pre-serialized bytes, so it costs next to nothing per request:

- `POST /v1/chat/completions` with `"stream": true`: 64 small content chunks, a chunk
  with `finish_reason`, a usage chunk (empty `choices`), then `data: [DONE]`; each SSE
  event is its own HTTP chunk, and the whole answer goes out in one `transport.write`
  (one send instead of 67: the same bytes on the wire, in fewer TCP segments, so the
  reader gets them in fewer reads, as from any fast upstream whose answer is ready at
  once). Every chunk that carries `content` carries a non-empty one, so the first
  `"content":"` in the stream is the first token.
- `POST /v1/chat/completions` otherwise: one `chat.completion` with the same text.
- a streamed request that offers `tools` gets a call to its first tool instead (arguments
  `{"step": N}`, N = the tool messages so far), so a client can drive a tool-call chain.
- `GET /v1/models`: `bench-model`, and `bench-paced`, which streams the same chunks
  `PACE` seconds apart (20 ms), as a model that writes as it thinks.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib

import orjson

MODEL = "bench-model"
PACED_MODEL = "bench-paced"
PACE = 0.02
CHUNKS = 64
TOKENS = [f"w{i} " for i in range(CHUNKS)]
TEXT = "".join(TOKENS)
USAGE = {"prompt_tokens": 12, "completion_tokens": CHUNKS, "total_tokens": 12 + CHUNKS}
_CREATED = 1_700_000_000


def _chunk(delta: dict, finish_reason: str | None = None, **extra) -> dict:
    return {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": _CREATED,
        "model": MODEL,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        **extra,
    }


def _sse_events() -> list[bytes]:
    deltas = [{"role": "assistant", "content": TOKENS[0]}]
    deltas += [{"content": token} for token in TOKENS[1:]]
    chunks = [_chunk(delta) for delta in deltas]
    chunks.append(_chunk({}, "stop"))
    chunks.append({**_chunk({}), "choices": [], "usage": USAGE})
    events = [b"data: " + orjson.dumps(chunk) + b"\n\n" for chunk in chunks]
    return [*events, b"data: [DONE]\n\n"]


def _http_chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def _fixed_response(status: str, body: bytes, content_type: bytes = b"application/json") -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\ncontent-length: {len(body)}\r\n".encode()
        + b"content-type: "
        + content_type
        + b"\r\n\r\n"
    )
    return head + body


STREAM_PARTS = [
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
    b"cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n",
    *(_http_chunk(event) for event in _sse_events()),
    b"0\r\n\r\n",
]
STREAM = b"".join(STREAM_PARTS)
COMPLETION = _fixed_response(
    "200 OK",
    orjson.dumps(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": _CREATED,
            "model": MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": TEXT},
                    "finish_reason": "stop",
                }
            ],
            "usage": USAGE,
        }
    ),
)
MODELS = _fixed_response(
    "200 OK",
    orjson.dumps(
        {
            "object": "list",
            "data": [
                {"id": name, "object": "model", "owned_by": "bench"}
                for name in (MODEL, PACED_MODEL)
            ],
        }
    ),
)
NOT_FOUND = _fixed_response("404 Not Found", b'{"error":{"message":"not found"}}')
BAD_REQUEST = _fixed_response("400 Bad Request", b'{"error":{"message":"bad request"}}')


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


def _parse(body: bytes) -> dict:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _tool_call_parts(request: dict) -> list[bytes]:
    """A streamed call to the request's first tool, numbered by the tool results so far."""
    step = sum(1 for m in request.get("messages") or () if m.get("role") == "tool")
    name = request["tools"][0]["function"]["name"]
    call = {"index": 0, "id": f"call_{step}", "type": "function"}
    chunks = [
        _chunk({"role": "assistant", "tool_calls": [{**call, "function": {"name": name}}]}),
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"step": '}}]}),
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": f"{step}}}"}}]}),
        _chunk({}, "tool_calls"),
        {**_chunk({}), "choices": [], "usage": USAGE},
    ]
    events = [b"data: " + orjson.dumps(chunk) + b"\n\n" for chunk in chunks]
    return [STREAM_PARTS[0], *(_http_chunk(e) for e in events), *STREAM_PARTS[-2:]]


class FakeUpstream(asyncio.Protocol):
    """One keep-alive connection; handles pipelined requests in arrival order."""

    def __init__(self) -> None:
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self._handle_one():
            pass

    def _handle_one(self) -> bool:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return False
        head = self.buffer[:end]
        body_start = end + 4
        body_end = body_start + _content_length(head)
        if len(self.buffer) < body_end:
            return False
        body = self.buffer[body_start:body_end]
        self.buffer = self.buffer[body_end:]
        self._respond(head.split(b" ", 2), body)
        return True

    def _write_if_open(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _respond(self, request_line: list[bytes], body: bytes) -> None:
        assert self.transport is not None
        method, path = request_line[0], request_line[1] if len(request_line) > 1 else b""
        if method == b"POST" and path == b"/v1/chat/completions":
            request = _parse(body)
            if not body:
                self.transport.write(BAD_REQUEST)
            elif request.get("stream") is True and request.get("tools"):
                self.transport.write(b"".join(_tool_call_parts(request)))
            elif request.get("stream") is True and request.get("model") == PACED_MODEL:
                loop = asyncio.get_running_loop()
                for n, part in enumerate(STREAM_PARTS):
                    loop.call_later(n * PACE, self._write_if_open, part)
            elif request.get("stream") is True:
                self.transport.write(STREAM)
            else:
                self.transport.write(COMPLETION)
        elif method == b"GET" and path == b"/v1/models":
            self.transport.write(MODELS)
        else:
            self.transport.write(NOT_FOUND)


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(FakeUpstream, host, port, backlog=1024)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:
        uvloop = None
    run = uvloop.run if uvloop else asyncio.run
    with contextlib.suppress(KeyboardInterrupt):
        run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
