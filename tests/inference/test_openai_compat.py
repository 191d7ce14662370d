"""The openai_compat provider against a real HTTP server on loopback: SSE parsing, errors,
connection reuse, timeouts, model listing."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from loom.errors import UpstreamError, UpstreamTimeoutError
from loom.inference.openai_compat import OpenAICompatProvider, Resilience
from tests.support.servers import ThreadedServer, free_port, serve

Handler = Callable[[Request], Awaitable[Response]]


class Upstream:
    """One loopback server for the module; each test sets what it answers."""

    def __init__(self) -> None:
        self.handler: Handler | None = None
        self.seen: list[dict] = []  # path, authorization and client port of each request
        self.app = Starlette(
            routes=[Route("/v1/{path:path}", self._dispatch, methods=["GET", "POST"])]
        )
        self.server: ThreadedServer | None = None

    async def _dispatch(self, request: Request) -> Response:
        assert self.handler is not None
        self.seen.append(
            {
                "path": request.url.path,
                "auth": request.headers.get("authorization"),
                "port": request.client.port if request.client else None,
            }
        )
        return await self.handler(request)

    def answer(self, handler: Handler) -> None:
        self.handler = handler
        self.seen.clear()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"{self.server.url}/v1"


@pytest.fixture(scope="module")
def up_server() -> Iterator[Upstream]:
    upstream = Upstream()
    with serve(upstream.app) as server:
        upstream.server = server
        yield upstream


@pytest.fixture
async def up(up_server: Upstream):
    up_server.answer(None)  # type: ignore[arg-type]
    made: list[OpenAICompatProvider] = []

    def provider(**options) -> OpenAICompatProvider:
        options.setdefault("api_key", "sk-secret")
        made.append(OpenAICompatProvider("up", up_server.url, **options))
        return made[-1]

    up_server.provider = provider  # type: ignore[attr-defined]
    yield up_server
    for p in made:
        await p.aclose()


def sse(blocks: list[bytes]) -> StreamingResponse:
    async def body():
        for block in blocks:
            yield block

    return StreamingResponse(body(), media_type="text/event-stream")


async def test_stream_parses_split_blocks_and_reuses_the_connection(up):
    blocks = [
        b'data: {"a"',
        b": 1}\n\n",
        b'data: {"b": 2}\r\n\r\n',
        b"data: [DONE]\n\n",
        b": trailing comment\n\n",
    ]

    async def handler(request: Request) -> Response:
        return sse(blocks)

    up.answer(handler)
    provider = up.provider()
    for _ in range(2):
        chunks = [c async for c in provider.stream_chat({"model": "m", "messages": []})]
        assert chunks == [{"a": 1}, {"b": 2}]
    assert [s["path"] for s in up.seen] == ["/v1/chat/completions"] * 2
    assert {s["auth"] for s in up.seen} == {"Bearer sk-secret"}
    # The body was read to its end after [DONE], so the second call reused the connection.
    assert up.seen[0]["port"] == up.seen[1]["port"]


async def test_http_error_before_stream_names_provider(up):
    async def handler(request: Request) -> Response:
        return JSONResponse({"error": {"message": "model x not found"}}, status_code=404)

    up.answer(handler)
    with pytest.raises(UpstreamError) as info:
        [c async for c in up.provider().stream_chat({"model": "x"})]
    assert info.value.status_code == 400 and "provider 'up'" in info.value.message
    assert "model x not found" in info.value.message


async def test_error_event_mid_stream(up):
    async def handler(request: Request) -> Response:
        return sse([b'data: {"choices": []}\n\n', b'data: {"error": {"message": "boom"}}\n\n'])

    up.answer(handler)
    got = []
    with pytest.raises(UpstreamError, match="boom"):
        async for chunk in up.provider().stream_chat({"model": "m"}):
            got.append(chunk)
    assert got == [{"choices": []}]


async def test_rate_limit_keeps_retry_after_and_server_errors_are_retried(up):
    answers = [
        JSONResponse({"error": {"message": "busy"}}, status_code=503),
        JSONResponse({"choices": [], "id": "ok"}),
    ]

    async def handler(request: Request) -> Response:
        return answers.pop(0)

    up.answer(handler)
    provider = up.provider(resilience=Resilience(retry_backoff=0.01))
    assert (await provider.chat({"model": "m"}))["id"] == "ok"
    assert len(up.seen) == 2

    async def limited(request: Request) -> Response:
        body = {"error": {"message": "slow down"}}
        return JSONResponse(body, status_code=429, headers={"Retry-After": "120"})

    up.answer(limited)
    with pytest.raises(UpstreamError) as info:
        await provider.chat({"model": "m"})
    assert info.value.status_code == 429 and info.value.headers == {"Retry-After": "120"}
    assert len(up.seen) == 1  # longer than the cap: passed on at once, not waited for


async def test_timeout_and_connect_errors(up):
    # A server that accepts the request and never answers: the read limit ends the wait.
    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        await reader.read()  # until the client gives up and closes
        writer.close()

    silent = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    slow = OpenAICompatProvider("up", f"http://127.0.0.1:{port}/v1", timeout=0.3)
    try:
        with pytest.raises(UpstreamTimeoutError) as info:
            await slow.chat({"model": "m"})
        assert info.value.status_code == 504
    finally:
        await slow.aclose()
        silent.close()
        await silent.wait_closed()

    # Nothing listens on this port: refused, retried, then reported unreachable.
    down = OpenAICompatProvider(
        "up", f"http://127.0.0.1:{free_port()}/v1", resilience=Resilience(retry_backoff=0.01)
    )
    try:
        with pytest.raises(UpstreamError) as info:
            await down.chat({"model": "m"})
        assert info.value.status_code == 502 and "unreachable" in info.value.message
    finally:
        await down.aclose()


async def test_a_stream_torn_mid_body_is_reported_as_broken_off(up):
    async def handler(request: Request) -> Response:
        async def body():
            yield b'data: {"choices": []}\n\n'
            raise ConnectionAbortedError("torn")

        return StreamingResponse(body(), media_type="text/event-stream")

    up.answer(handler)
    got = []
    with pytest.raises(UpstreamError, match="broke off the stream"):
        async for chunk in up.provider().stream_chat({"model": "m"}):
            got.append(chunk)
    assert got == [{"choices": []}]


async def test_model_listing_is_cached_and_tolerates_failure(up):
    async def handler(request: Request) -> Response:
        return JSONResponse({"data": [{"id": "a"}, {"id": "b"}]})

    up.answer(handler)
    p = up.provider()
    assert await p.list_models() == ["a", "b"]
    assert await p.list_models() == ["a", "b"]
    assert [s["path"] for s in up.seen] == ["/v1/models"]

    async def broken(request: Request) -> Response:
        return PlainTextResponse("no", status_code=500)

    up.answer(broken)
    assert await up.provider().list_models() is None


async def test_context_windows_from_config_then_from_models_listing(up):
    listing = {
        "data": [
            {"id": "vllm-model", "max_model_len": 32768},
            {"id": "router-model", "context_length": 128000},
            {"id": "studio-model", "max_context_length": 8192},
            {"id": "plain-model"},
            {"id": "odd-model", "context_window": "big"},
        ]
    }

    async def handler(request: Request) -> Response:
        return JSONResponse(listing)

    up.answer(handler)
    p = up.provider(context_windows={"plain-model": 4096, "vllm-model": 1000})
    assert await p.context_window("vllm-model") == 1000  # configuration wins
    assert await p.context_window("router-model") == 128000
    assert await p.context_window("studio-model") == 8192
    assert await p.context_window("plain-model") == 4096
    assert await p.context_window("odd-model") is None
    assert await p.list_models() == [m["id"] for m in listing["data"]]
    assert [s["path"] for s in up.seen] == ["/v1/models"]  # one listing serves both

    static = up.provider(models=["router-model"])
    assert await static.context_window("router-model") is None
    assert len(up.seen) == 1  # configured models: /models is not asked


async def test_upstream_context_length_error_keeps_its_code(up):
    body = {
        "error": {
            "message": "This model's maximum context length is 8192 tokens.",
            "type": "invalid_request_error",
            "param": "messages",
            "code": "context_length_exceeded",
        }
    }

    async def handler(request: Request) -> Response:
        return JSONResponse(body, status_code=400)

    up.answer(handler)
    with pytest.raises(UpstreamError) as caught:
        await up.provider().chat({"model": "m", "messages": []})
    assert caught.value.status_code == 400
    assert caught.value.code == "context_length_exceeded"
    assert caught.value.error_type == "invalid_request_error"
