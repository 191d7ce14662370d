"""Limits end to end: 413 for a body over the limit (declared or found while reading),
400 naming the field for too many input items or tools, and per-key 429s with
`Retry-After` in OpenAI's error shape, for requests per minute and for concurrency."""

from __future__ import annotations

import socket
import time

import openai
import pytest

from tests.conftest import run_loom
from tests.support.keys import ALICE_KEY, BOB_KEY, authed_env, http, sdk
from tests.support.upstream import Turn

MODEL = "openai/gpt-4o"


@pytest.fixture(scope="module")
def limited(loom_env, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("limits")
    env = authed_env(
        loom_env,
        workdir,
        f"sqlite+aiosqlite:///{workdir / 'loom.db'}",
        LOOM_MAX_BODY_BYTES="4000",
        LOOM_MAX_INPUT_ITEMS="3",
        LOOM_MAX_TOOLS="2",
    )
    with run_loom(env) as server:
        yield server


def _too_large(answer) -> None:
    assert answer.status_code == 413
    assert answer.json() == {
        "error": {
            "message": "The request body is larger than the limit of 4000 bytes.",
            "type": "invalid_request_error",
            "param": "max_body_bytes",
            "code": "request_too_large",
        }
    }


def test_a_declared_body_over_the_limit_is_refused_before_reading(limited):
    with http(limited, ALICE_KEY) as client:
        _too_large(client.post("/v1/responses", json={"model": MODEL, "input": "x" * 5000}))
        # At the limit is fine (and fails later, on the model, not on size).
        small = client.post("/v1/responses", content=b"{" + b" " * 3990 + b"}")
        assert small.status_code == 400 and small.json()["error"]["param"] == "model"


def _raw_exchange(server, head: bytes, body: bytes) -> bytes:
    """Send a request head and part of a body, never finish it, and read the answer."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=15) as sock:
        sock.sendall(head + body)
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            data = sock.recv(65536)
            if not data:
                break
            answer += data
    return answer


def test_an_unfinished_huge_body_gets_413_without_being_waited_for(limited):
    # Claims a gigabyte, sends nothing: answered at once from the header.
    head = (
        b"POST /v1/responses HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer " + ALICE_KEY.encode() + b"\r\n"
    )
    answer = _raw_exchange(limited, head + b"Content-Length: 1000000000\r\n\r\n", b"")
    assert answer.startswith(b"HTTP/1.1 413")
    assert b'"code":"request_too_large"' in answer
    # Chunked, no length: 5000 bytes sent and the rest never comes; the 413 comes anyway.
    chunk = b'{"input": "' + b"x" * 5000
    answer = _raw_exchange(
        limited,
        head + b"Transfer-Encoding: chunked\r\n\r\n",
        f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 413")
    assert b'"param":"max_body_bytes"' in answer


def test_a_chunked_body_over_the_limit_gets_413(limited):
    def pieces():
        for _ in range(10):
            yield b" " * 1000

    with http(limited, ALICE_KEY) as client:
        _too_large(client.post("/v1/chat/completions", content=pieces()))


def test_too_many_input_items_or_tools_is_a_400_naming_the_field(limited, upstream):
    client = sdk(limited, ALICE_KEY)
    message = {"role": "user", "content": "hi"}
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model=MODEL, input=[message] * 4)
    assert caught.value.param == "input" and caught.value.code == "array_above_max_length"
    assert "maximum length 3" in caught.value.message
    tool = {"type": "function", "name": "f", "parameters": {"type": "object"}}
    tools = [{**tool, "name": f"f{i}"} for i in range(3)]
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model=MODEL, input="hi", tools=tools)
    assert caught.value.param == "tools" and "maximum length 2" in caught.value.message
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=MODEL, messages=[message] * 4)
    assert caught.value.param == "messages"
    upstream.script(Turn(text="fine"))
    assert client.responses.create(model=MODEL, input=[message] * 3).output_text == "fine"


def test_requests_per_minute_per_key_gets_429_with_retry_after(loom_env, tmp_path):
    env = authed_env(
        loom_env,
        tmp_path,
        f"sqlite+aiosqlite:///{tmp_path / 'loom.db'}",
        LOOM_REQUESTS_PER_MINUTE_PER_KEY="3",
    )
    with run_loom(env) as server, http(server, ALICE_KEY) as alice:
        for _ in range(3):
            assert alice.get("/v1/responses").status_code == 200
        refused = alice.get("/v1/responses")
        assert refused.status_code == 429
        assert 1 <= int(refused.headers["retry-after"]) <= 20
        assert refused.json() == {
            "error": {
                "message": "Rate limit reached for requests: limit 3 per minute per key.",
                "type": "requests",
                "param": None,
                "code": "rate_limit_exceeded",
            }
        }
        with pytest.raises(openai.RateLimitError):
            sdk(server, ALICE_KEY).models.list()
        with http(server, BOB_KEY) as bob:  # each key has its own budget
            assert bob.get("/v1/responses").status_code == 200


def test_concurrent_requests_per_key_gets_429_while_one_is_in_flight(loom_env, tmp_path, upstream):
    env = authed_env(
        loom_env,
        tmp_path,
        f"sqlite+aiosqlite:///{tmp_path / 'loom.db'}",
        LOOM_CONCURRENT_REQUESTS_PER_KEY="1",
    )
    upstream.script(Turn(text=" ".join(["word"] * 40), delay=0.05))
    with run_loom(env) as server, http(server, ALICE_KEY) as alice, http(server, BOB_KEY) as bob:
        body = {"model": MODEL, "input": "slow", "stream": True}
        with alice.stream("POST", "/v1/responses", json=body) as streaming:
            lines = streaming.iter_lines()
            for line in lines:  # wait until the turn is producing text
                if "response.output_text.delta" in line:
                    break
            refused = alice.get("/v1/responses")
            assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
            assert refused.json()["error"]["code"] == "rate_limit_exceeded"
            assert bob.get("/v1/responses").status_code == 200
            assert any("response.completed" in line for line in lines)
        # Once the stream has ended the slot frees; the middleware releases it just after
        # the last byte, so poll briefly for that real condition.
        deadline = time.monotonic() + 10
        while (status := alice.get("/v1/responses").status_code) == 429:
            assert time.monotonic() < deadline, "the concurrency slot was never released"
        assert status == 200
