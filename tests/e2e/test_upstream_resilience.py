"""An upstream that misbehaves on purpose: content filter, 429, 503, torn and garbage
streams, stalls, and one that stays down (the circuit breaker). Each case runs against the
real fake upstream over loopback, for Responses streaming and not, and for Chat Completions.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests.conftest import run_loom
from tests.support.schemas import validate_response
from tests.support.servers import ThreadedServer
from tests.support.stream_validator import parse_sse, validate_stream
from tests.support.upstream import FakeUpstream, Turn

FLAKY = "flaky/gpt-4o"  # retries twice, 2 s first-token and idle timeouts
FRAGILE = "fragile/gpt-4o"  # no retries; its breaker opens after 2 failures
COOLDOWN = 0.5


@pytest.fixture(scope="module")
def loom(upstream_server, tmp_path_factory) -> Iterator[ThreadedServer]:
    _, server = upstream_server
    tmp: Path = tmp_path_factory.mktemp("resilience")
    common = {"base_url": f"{server.url}/v1", "api_key": "k", "models": ["gpt-4o"]}
    config = {
        "local_models": [],
        "providers": [
            {
                "name": "flaky",
                **common,
                "timeout": 3,
                "max_retries": 2,
                "retry_backoff": 0.01,
                "retry_after_cap": 2,
                "first_token_timeout": 2.0,
                "idle_timeout": 2.0,
                "breaker_threshold": 1000,
            },
            {
                "name": "fragile",
                **common,
                "max_retries": 0,
                "breaker_threshold": 2,
                "breaker_cooldown": COOLDOWN,
            },
        ],
    }
    path = tmp / "loom.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {"LOOM_CONFIG": str(path), "LOOM_DB_URL": f"sqlite+aiosqlite:///{tmp / 'loom.db'}"}
    with run_loom(env) as loom_server:
        yield loom_server


@pytest.fixture
def http(loom, upstream) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{loom.url}/v1", timeout=30) as client:
        yield client


def respond(http: httpx.Client, stream: bool, model: str = FLAKY) -> httpx.Response:
    """POST /v1/responses; a 200 stream is read whole and its events validated."""
    response = http.post("/responses", json={"model": model, "input": "hi", "stream": stream})
    if response.status_code == 200:
        if stream:
            response.final = validate_stream(parse_sse(response.content))  # type: ignore[attr-defined]
        else:
            validate_response(response.json())
            response.final = response.json()  # type: ignore[attr-defined]
    return response


def chat(http: httpx.Client, stream: bool, model: str = FLAKY) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    return http.post("/chat/completions", json=body)


def chat_chunks(response: httpx.Response) -> list[dict]:
    events = [data for _, data in parse_sse(response.content.replace(b"data: [DONE]\n\n", b""))]
    assert response.content.endswith(b"data: [DONE]\n\n")
    return events


def assert_openai_error(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == code
    assert "'flaky'" in error["message"] or "'fragile'" in error["message"]
    return error


# -- content filter ---------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_content_filter_ends_incomplete(http, upstream, stream):
    upstream.script(Turn(text="half an answer", finish_reason="content_filter"))
    final = respond(http, stream).final
    assert final["status"] == "incomplete"
    assert final["incomplete_details"] == {"reason": "content_filter"}
    assert final["output"][0]["status"] == "incomplete"
    assert final["output"][0]["content"][0]["text"] == "half an answer"
    assert http.get(f"/responses/{final['id']}").json()["status"] == "incomplete"


@pytest.mark.parametrize("stream", [False, True])
def test_chat_passes_content_filter_through(http, upstream, stream):
    upstream.script(Turn(text="half", finish_reason="content_filter"))
    response = chat(http, stream)
    assert response.status_code == 200
    if stream:
        finishes = [c["choices"][0]["finish_reason"] for c in chat_chunks(response) if c["choices"]]
        assert finishes[-1] == "content_filter"
    else:
        assert response.json()["choices"][0]["finish_reason"] == "content_filter"


# -- 429 ----------------------------------------------------------------------------------


@pytest.mark.parametrize("route", ["responses", "chat"])
@pytest.mark.parametrize("stream", [False, True])
def test_429_with_long_retry_after_stays_429(http, upstream, route, stream):
    upstream.script(Turn(status=429, retry_after="7"))
    response = respond(http, stream) if route == "responses" else chat(http, stream)
    error = assert_openai_error(response, 429, "rate_limit_exceeded")
    assert error["type"] == "rate_limit_error"
    assert response.headers["retry-after"] == "7"
    assert len(upstream.requests) == 1, "a Retry-After over the cap is not waited for"


@pytest.mark.parametrize("stream", [False, True])
def test_429_with_short_retry_after_is_retried(http, upstream, stream):
    upstream.script(Turn(status=429, retry_after="0"), Turn(text="after the wait"))
    final = respond(http, stream).final
    assert final["status"] == "completed" and final["output"][0]["content"][0]["text"]
    assert len(upstream.requests) == 2


def test_429_every_time_gives_429_after_the_retries(http, upstream):
    upstream.script(*[Turn(status=429, retry_after="0")] * 3)
    response = respond(http, stream=True)
    assert_openai_error(response, 429, "rate_limit_exceeded")
    assert response.headers["retry-after"] == "0"
    assert len(upstream.requests) == 3  # the first try and two retries


# -- 5xx and torn streams before the first token: retried --------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_transient_503_is_retried(http, upstream, stream):
    upstream.script(Turn(status=503), Turn(text="second time lucky"))
    final = respond(http, stream).final
    assert final["status"] == "completed"
    assert final["output"][0]["content"][0]["text"] == "second time lucky"
    assert len(upstream.requests) == 2


@pytest.mark.parametrize("stream", [False, True])
def test_chat_transient_503_is_retried(http, upstream, stream):
    upstream.script(Turn(status=503), Turn(text="fine now"))
    response = chat(http, stream)
    assert response.status_code == 200
    if stream:
        text = "".join(
            c["choices"][0]["delta"].get("content") or ""
            for c in chat_chunks(response)
            if c["choices"]
        )
    else:
        text = response.json()["choices"][0]["message"]["content"]
    assert text == "fine now" and len(upstream.requests) == 2


def test_503_every_time_gives_502_after_the_retries(http, upstream):
    upstream.script(*[Turn(status=503)] * 3)
    assert_openai_error(respond(http, stream=False), 502, "upstream_error")
    assert len(upstream.requests) == 3


def test_stream_torn_before_the_first_chunk_is_retried(http, upstream):
    upstream.script(Turn(text="lost", fail_after=0), Turn(text="kept"))
    final = respond(http, stream=True).final
    assert final["status"] == "completed"
    assert final["output"][0]["content"][0]["text"] == "kept"
    assert len(upstream.requests) == 2


# -- after the first token: failed, never retried ----------------------------------------


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("mode", ["disconnect", "garbage"])
def test_failure_after_the_first_token_fails_the_response(http, upstream, stream, mode):
    upstream.script(Turn(text="one two three four five", fail_after=3, fail_mode=mode))
    final = respond(http, stream).final
    assert final["status"] == "failed" and final["error"]["code"] == "server_error"
    expected = "broke off the stream" if mode == "disconnect" else "not JSON"
    assert expected in final["error"]["message"] and "flaky" in final["error"]["message"]
    assert len(upstream.requests) == 1, "nothing is retried once a token was received"
    assert http.get(f"/responses/{final['id']}").json()["status"] == "failed"


def test_chat_stream_garbage_chunk_is_an_in_band_error(http, upstream):
    upstream.script(Turn(text="one two three four", fail_after=3, fail_mode="garbage"))
    chunks = chat_chunks(chat(http, stream=True))
    assert chunks[-1]["error"]["type"] == "upstream_error"
    assert "not JSON" in chunks[-1]["error"]["message"]
    assert all("choices" in c for c in chunks[:-1]) and len(chunks) == 4


# -- stalls ---------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_stall_before_the_first_chunk_is_504(http, upstream, stream):
    upstream.script(Turn(text="never sent", stall_after=0))
    started = time.monotonic()
    response = respond(http, stream)
    error = assert_openai_error(response, 504, "upstream_timeout")
    assert "no first token within 2s" in error["message"]
    assert time.monotonic() - started < 10, "the stall is cut at the first-token timeout"
    assert len(upstream.requests) == 1, "a timeout is not retried"


def test_stall_mid_stream_fails_with_upstream_timeout(http, upstream):
    upstream.script(Turn(text="one two three four five", stall_after=3))
    final = respond(http, stream=True).final
    assert final["status"] == "failed"
    assert final["error"]["code"] == "upstream_timeout"
    assert "no chunk for 2s" in final["error"]["message"]
    stored = http.get(f"/responses/{final['id']}").json()
    assert stored["status"] == "failed" and stored["error"]["code"] == "upstream_timeout"


def test_stall_mid_stream_not_streaming_is_504_and_stored_failed(http, upstream):
    upstream.script(Turn(text="one two three four five", stall_after=3))
    error = assert_openai_error(respond(http, stream=False), 504, "upstream_timeout")
    response_id = error["message"].rsplit("(response ", 1)[1].split(" ")[0]
    stored = http.get(f"/responses/{response_id}").json()
    validate_response(stored)
    assert stored["status"] == "failed" and stored["error"]["code"] == "upstream_timeout"


def test_chat_stalls(http, upstream):
    upstream.script(Turn(text="never", stall_after=0))
    assert_openai_error(chat(http, stream=True), 504, "upstream_timeout")

    upstream.script(Turn(text="one two three four", stall_after=2))
    chunks = chat_chunks(chat(http, stream=True))
    assert chunks[-1]["error"]["code"] == "upstream_timeout" and len(chunks) == 3

    upstream.script(Turn(text="never", stall_after=0))  # not streamed: the read timeout
    assert_openai_error(chat(http, stream=False), 504, "upstream_timeout")


# -- the circuit breaker ------------------------------------------------------------------


def test_breaker_fails_fast_then_probes(http, upstream: FakeUpstream):
    upstream.script(Turn(status=503), Turn(status=503))
    assert_openai_error(respond(http, False, FRAGILE), 502, "upstream_error")
    assert_openai_error(respond(http, True, FRAGILE), 502, "upstream_error")
    assert len(upstream.requests) == 2

    # Open: answered at once, the upstream is not called.
    for stream in (False, True):
        fast = respond(http, stream, FRAGILE)
        error = assert_openai_error(fast, 503, "upstream_unavailable")
        assert "circuit breaker open" in error["message"]
        assert 1 <= int(fast.headers["retry-after"]) <= 1 + COOLDOWN
    fast = chat(http, True, FRAGILE)
    assert_openai_error(fast, 503, "upstream_unavailable")
    assert len(upstream.requests) == 2
    # Another provider is not affected.
    upstream.script(Turn(text="flaky is fine"))
    assert respond(http, False, FLAKY).final["status"] == "completed"
    upstream.requests.clear()

    # After the cool-down one probe goes through; it fails, so the breaker opens again.
    upstream.script(Turn(status=503))
    response = wait_for_probe(http)
    assert_openai_error(response, 502, "upstream_error")
    assert_openai_error(respond(http, False, FRAGILE), 503, "upstream_unavailable")
    assert len(upstream.requests) == 1

    # The next probe succeeds and closes it.
    upstream.script(Turn(text="back"), Turn(text="and again"))
    assert wait_for_probe(http).final["status"] == "completed"
    assert respond(http, True, FRAGILE).final["status"] == "completed"
    assert len(upstream.requests) == 3


def wait_for_probe(http: httpx.Client) -> httpx.Response:
    """Call until a call is let through (the breaker went half-open): a real condition,
    polled with a deadline, as no event announces the end of a cool-down."""
    deadline = time.monotonic() + 10 * COOLDOWN + 5
    while time.monotonic() < deadline:
        response = respond(http, False, FRAGILE)
        if response.status_code != 503:
            return response
    raise AssertionError("the breaker never let a probe through")
