"""The openai_compat provider on an httpx mock transport: SSE parsing, errors, reuse."""

from __future__ import annotations

import httpx
import pytest

from loom.errors import UpstreamError, UpstreamTimeoutError
from loom.inference.openai_compat import OpenAICompatProvider


class Body(httpx.AsyncByteStream):
    """A streamed body that remembers whether it was read to the end."""

    def __init__(self, blocks: list[bytes]):
        self.blocks = blocks
        self.finished = False

    async def __aiter__(self):
        for block in self.blocks:
            yield block
        self.finished = True


def provider(handler) -> OpenAICompatProvider:
    return OpenAICompatProvider(
        "up", "http://up/v1", api_key="sk-secret", transport=httpx.MockTransport(handler)
    )


async def test_stream_parses_split_blocks_and_reads_to_the_end():
    body = Body(
        [
            b'data: {"a"',
            b": 1}\n\n",
            b'data: {"b": 2}\r\n\r\n',
            b"data: [DONE]\n\n",
            b": trailing comment\n\n",
        ]
    )
    seen = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen["auth"] = request.headers["authorization"]
        seen["path"] = request.url.path
        return httpx.Response(200, stream=body, headers={"content-type": "text/event-stream"})

    chunks = [c async for c in provider(handler).stream_chat({"model": "m", "messages": []})]
    assert chunks == [{"a": 1}, {"b": 2}]
    assert body.finished, "the body must be drained so the connection can be reused"
    assert seen == {"auth": "Bearer sk-secret", "path": "/v1/chat/completions"}


async def test_http_error_before_stream_names_provider():
    def handler(request):
        return httpx.Response(404, json={"error": {"message": "model x not found"}})

    with pytest.raises(UpstreamError) as info:
        [c async for c in provider(handler).stream_chat({"model": "x"})]
    assert info.value.status_code == 400 and "provider 'up'" in info.value.message
    assert "model x not found" in info.value.message


async def test_error_event_mid_stream():
    def handler(request):
        return httpx.Response(
            200,
            stream=Body(
                [b'data: {"choices": []}\n\n', b'data: {"error": {"message": "boom"}}\n\n']
            ),
        )

    got = []
    with pytest.raises(UpstreamError, match="boom"):
        async for chunk in provider(handler).stream_chat({"model": "m"}):
            got.append(chunk)
    assert got == [{"choices": []}]


async def test_timeout_and_connect_errors():
    def slow(request):
        raise httpx.ReadTimeout("slow", request=request)

    def down(request):
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(UpstreamTimeoutError) as info:
        await provider(slow).chat({"model": "m"})
    assert info.value.status_code == 504
    with pytest.raises(UpstreamError) as info:
        await provider(down).chat({"model": "m"})
    assert info.value.status_code == 502 and "unreachable" in info.value.message


async def test_model_listing_is_cached_and_tolerates_failure():
    calls = []

    def handler(request):
        calls.append(request.url.path)
        return httpx.Response(200, json={"data": [{"id": "a"}, {"id": "b"}]})

    p = provider(handler)
    assert await p.list_models() == ["a", "b"]
    assert await p.list_models() == ["a", "b"]
    assert calls == ["/v1/models"]
    broken = provider(lambda r: httpx.Response(500, text="no"))
    assert await broken.list_models() is None


async def test_context_windows_from_config_then_from_models_listing():
    listing = {
        "data": [
            {"id": "vllm-model", "max_model_len": 32768},
            {"id": "router-model", "context_length": 128000},
            {"id": "studio-model", "max_context_length": 8192},
            {"id": "plain-model"},
            {"id": "odd-model", "context_window": "big"},
        ]
    }
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        return httpx.Response(200, json=listing)

    up = OpenAICompatProvider(
        "up",
        "http://up/v1",
        transport=httpx.MockTransport(handler),
        context_windows={"plain-model": 4096, "vllm-model": 1000},
    )
    assert await up.context_window("vllm-model") == 1000  # configuration wins
    assert await up.context_window("router-model") == 128000
    assert await up.context_window("studio-model") == 8192
    assert await up.context_window("plain-model") == 4096
    assert await up.context_window("odd-model") is None
    assert await up.list_models() == [m["id"] for m in listing["data"]]
    assert calls == ["/v1/models"]  # one listing serves both
    await up.aclose()

    static = OpenAICompatProvider(
        "up", "http://up/v1", models=["router-model"], transport=httpx.MockTransport(handler)
    )
    assert await static.context_window("router-model") is None
    assert calls == ["/v1/models"]  # configured models: /models is not asked
    await static.aclose()


async def test_upstream_context_length_error_keeps_its_code():
    body = {
        "error": {
            "message": "This model's maximum context length is 8192 tokens.",
            "type": "invalid_request_error",
            "param": "messages",
            "code": "context_length_exceeded",
        }
    }
    up = provider(lambda request: httpx.Response(400, json=body))
    with pytest.raises(UpstreamError) as caught:
        await up.chat({"model": "m", "messages": []})
    assert caught.value.status_code == 400
    assert caught.value.code == "context_length_exceeded"
    assert caught.value.error_type == "invalid_request_error"
    await up.aclose()
