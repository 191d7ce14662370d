"""The load generator's client (`bench/client.py`) still sees every stream's first token and
end exactly, however the answer is cut into reads: the bench's figures depend on it."""

from __future__ import annotations

import asyncio

import orjson

from bench import fake_upstream
from bench.client import Client, _Exchange, encode_request, last_event

FIRST_TOKEN = b"event: response.output_text.delta"
COMPLETED = b"event: response.completed"
FAILED = b"event: response.failed"


def _event(kind: str, **data) -> bytes:
    return f"event: {kind}\ndata: ".encode() + orjson.dumps({"type": kind, **data}) + b"\n\n"


# A Loom-shaped stream: its terminal event (the whole response) is longer than the others,
# and its name appears earlier in the text of a delta, so only its position tells it apart.
STREAM = b"".join(
    [
        _event("response.created", response={"status": "in_progress"}),
        *(_event("response.output_text.delta", delta=f"w{i} ") for i in range(8)),
        _event("response.output_text.delta", delta="event: response.completed"),
        _event("response.completed", response={"output": "w " * 400}),
    ]
)


def _splits(data: bytes):
    """The stream cut in two at every byte, then into pieces of every size up to 64."""
    for cut in range(1, len(data)):
        yield [data[:cut], data[cut:]]
    for size in range(1, 65):
        yield [data[i : i + size] for i in range(0, len(data), size)]


def test_the_last_event_whatever_the_reads():
    expected = _event("response.completed", response={"output": "w " * 400})[:-2]
    for blocks in _splits(STREAM):
        assert last_event(blocks) == expected


def test_a_body_without_blank_lines_is_its_own_last_event():
    assert last_event([b"data: [DO", b"NE]\n\n"]) == b"data: [DONE]"
    assert last_event([b"not sse\n"]) == b"not sse"
    assert last_event([]) == b""


async def test_first_token_end_and_failure_markers_whatever_the_reads():
    failed = STREAM[: STREAM.index(b'event: response.completed\ndata: {"type":"response.com')]
    failed += _event("response.failed", response={"status": "failed"})
    for body, ends, fails in ((STREAM, True, False), (failed, False, True)):
        for blocks in _splits(body):
            exchange = _Exchange(FIRST_TOKEN, COMPLETED, watch=(FAILED,))
            for n, block in enumerate(blocks):
                exchange.feed(block)
                if n == 0 and FIRST_TOKEN not in block:
                    assert exchange.first_at is None
            exchange.complete()
            assert exchange.first_at is not None
            assert (exchange.ended, FAILED in exchange.seen) == (ends, fails)


async def test_the_first_token_is_seen_in_the_read_that_completes_it():
    at = STREAM.index(FIRST_TOKEN)
    for cut in range(at + 1, at + len(FIRST_TOKEN) + 1):
        exchange = _Exchange(FIRST_TOKEN, COMPLETED)
        exchange.feed(STREAM[:cut])
        assert (exchange.first_at is not None) == (cut == at + len(FIRST_TOKEN))
        exchange.feed(STREAM[cut : at + len(FIRST_TOKEN)])
        assert exchange.first_at is not None


async def test_streams_from_the_fake_upstream_over_loopback():
    """One answer in one write, then the paced model's 67 writes: both are read whole, with
    their first token and their end, on one keep-alive connection."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(fake_upstream.FakeUpstream, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    client = Client("127.0.0.1", port)
    try:
        for model in (fake_upstream.MODEL, fake_upstream.PACED_MODEL):
            body = {"model": model, "stream": True, "messages": [{"role": "user", "content": "x"}]}
            request = encode_request(url, orjson.dumps(body))
            answer = await client.send(
                request, marker=b'"content":"', end_marker=b"data: [DONE]", watch=(b"data: {",)
            )
            assert answer.status == 200
            assert answer.first_at is not None and answer.ended
            assert answer.seen == set()  # a chunk is in the stream, but not last
            text = b"".join(answer.body)
            assert text.count(b"data: ") == fake_upstream.CHUNKS + 3
    finally:
        client.close()
        server.close()
        await server.wait_closed()
