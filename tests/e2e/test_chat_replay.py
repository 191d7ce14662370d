"""Record/replay end to end: a real Loom under uvicorn, real HTTP, real SSE.

Replays the shared recordings (recorded against `https://api.openai.com/v1/v1`), records
against the fake upstream and replays byte for byte, and checks a replay miss's error.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from loom.inference.recording import request_key
from tests.conftest import run_loom
from tests.support.servers import free_port
from tests.support.shared import SHARED_RECORDINGS, read_shared_json, require_shared
from tests.support.upstream import Turn

SHARED_FILE = SHARED_RECORDINGS / (
    "cdc628da240d62f71111f8e560f56d9fa3c0e3042f45ce5d5bc3075e3ba32574.json"
)
RECORDED_BASE_URL = "https://api.openai.com/v1/v1"
CHUNK_TYPE = "openai.types.chat.chat_completion_chunk.ChatCompletionChunk"
TEST_ID_HEADER = "X-Loom-Test-Id"


def _replay_env(tmp_path: Path, base_url: str, directory: Path) -> dict[str, str]:
    return {
        "OPENAI_API_KEY": "x",
        "OPENAI_BASE_URL": base_url,
        "LOOM_INFERENCE_MODE": "replay",
        "LOOM_RECORDINGS_DIR": str(directory),
        "LOOM_LOCAL_MODELS": "off",
        "LOOM_DB_URL": f"sqlite+aiosqlite:///{tmp_path / 'loom.db'}",
    }


def _shared_streaming_recordings() -> list[Path]:
    """Streaming chat recordings whose file name is the key of their own request."""
    matching = []
    for path in sorted(require_shared(SHARED_RECORDINGS).glob("*.json")):
        data = json.loads(path.read_text())
        request = data["request"]
        if request.get("endpoint") != "/v1/chat/completions":
            continue
        if not data["response"]["is_streaming"]:
            continue
        key = request_key("POST", "/v1/v1/chat/completions", request["body"], data["test_id"])
        if path.stem == key:
            matching.append(path)
    return matching


def _loom_body(recorded: dict[str, Any]) -> dict[str, Any]:
    return {**recorded, "model": f"openai/{recorded['model']}"}


def _sse_data(client: httpx.Client, body: dict[str, Any], test_id: str | None) -> list[str]:
    headers = {TEST_ID_HEADER: test_id} if test_id else {}
    with client.stream("POST", "/v1/chat/completions", json=body, headers=headers) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        return [line[6:] for line in response.iter_lines() if line.startswith("data: ")]


def _assert_replayed(data_lines: list[str], recording: dict[str, Any]) -> None:
    expected = [chunk["__data__"] for chunk in recording["response"]["body"]]
    assert data_lines[-1] == "[DONE]"
    assert [json.loads(line) for line in data_lines[:-1]] == expected


@pytest.fixture
def no_network_base_url() -> str:
    # The key uses only the URL path, so a base URL with the recorded path on a loopback port
    # where nothing listens replays the same files, and any live call would fail loudly.
    return f"http://127.0.0.1:{free_port()}/v1/v1"


# -- replaying the shared recordings --------------------------------------------------------


def test_replay_shared_recording_over_http_and_sdk(tmp_path):
    recording = read_shared_json(SHARED_FILE)
    test_id = recording["test_id"]
    body = _loom_body(recording["request"]["body"])
    env = _replay_env(tmp_path, RECORDED_BASE_URL, SHARED_RECORDINGS)
    with run_loom(env) as loom, httpx.Client(base_url=loom.url, timeout=30) as client:
        _assert_replayed(_sse_data(client, body, test_id), recording)

    # A fresh database: a replay repeats the recorded completion id, which is stored.
    env["LOOM_DB_URL"] = f"sqlite+aiosqlite:///{tmp_path / 'sdk.db'}"
    with run_loom(env) as loom:
        sdk = openai.OpenAI(base_url=f"{loom.url}/v1", api_key="x", max_retries=0)
        stream = sdk.chat.completions.create(**body, extra_headers={TEST_ID_HEADER: test_id})
        chunks = [chunk.to_dict() for chunk in stream]
    assert chunks == [chunk["__data__"] for chunk in recording["response"]["body"]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert "-100" in text


def test_replay_many_shared_streaming_recordings(tmp_path, no_network_base_url):
    paths = [p for p in _shared_streaming_recordings() if p != SHARED_FILE]
    assert len(paths) >= 20
    with (
        run_loom(_replay_env(tmp_path, no_network_base_url, SHARED_RECORDINGS)) as loom,
        httpx.Client(base_url=loom.url, timeout=30) as client,
    ):
        for path in paths:
            recording = json.loads(path.read_text())
            body = _loom_body(recording["request"]["body"])
            _assert_replayed(_sse_data(client, body, recording["test_id"]), recording)


# -- record, then replay byte for byte ---------------------------------------------------------


def _record_env(loom_env: dict[str, str], directory: Path, mode: str) -> dict[str, str]:
    # A fresh database per run, as in CI: a replay repeats the recorded completion ids.
    return {
        **loom_env,
        "LOOM_INFERENCE_MODE": mode,
        "LOOM_RECORDINGS_DIR": str(directory),
        "LOOM_DB_URL": f"sqlite+aiosqlite:///{directory.parent / f'{mode}.db'}",
    }


def _exchange(loom_url: str, test_id: str) -> Iterator[tuple[str, int, bytes]]:
    """The same three calls, with their raw response bytes."""
    headers = {TEST_ID_HEADER: test_id}
    stream_body = {
        "model": "openai/gpt-4o",
        "messages": [{"role": "user", "content": "Say hello"}],
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": 0.2,
    }
    with httpx.Client(base_url=loom_url, timeout=30, headers=headers) as client:
        with client.stream("POST", "/v1/chat/completions", json=stream_body) as response:
            yield "stream", response.status_code, b"".join(response.iter_bytes())
        chat_body = {"model": "openai/gpt-4o", "messages": [{"role": "user", "content": "Hi?"}]}
        response = client.post("/v1/chat/completions", json=chat_body)
        yield "chat", response.status_code, response.content
        embed_body = {"model": "openai/text-embedding-3-small", "input": ["a", "b c"]}
        response = client.post("/v1/embeddings", json=embed_body)
        yield "embed", response.status_code, response.content


def test_record_then_replay_is_byte_identical(tmp_path, upstream, loom_env):
    directory = tmp_path / "recordings"
    test_id = "tests/e2e/test_chat_replay.py::test_record_then_replay_is_byte_identical"
    upstream.script(
        Turn(text="Hello there, how can I help you today?", chunk_size=2),
        Turn(text="Hi! Yes."),
    )
    with run_loom(_record_env(loom_env, directory, "record")) as loom:
        recorded = list(_exchange(loom.url, test_id))
    assert [status for _, status, _ in recorded] == [200, 200, 200]
    assert len(upstream.requests) == 3
    assert recorded[0][2].endswith(b"data: [DONE]\n\n")
    assert b"Hello there," in recorded[0][2]

    upstream.reset()  # the script is now empty: any live call would fail
    with run_loom(_record_env(loom_env, directory, "replay")) as loom:
        replayed = list(_exchange(loom.url, test_id))
    assert upstream.requests == []
    for (name, status, recorded_bytes), (_, replay_status, replay_bytes) in zip(
        recorded, replayed, strict=True
    ):
        assert replay_status == status, name
        assert replay_bytes == recorded_bytes, name

    files = {}
    for path in directory.iterdir():
        text = path.read_text(encoding="utf-8")
        assert "test-key" not in text  # the API key never lands in a recording
        data = json.loads(text)
        files[(data["request"]["endpoint"], data["response"]["is_streaming"])] = data
        assert list(data) == ["test_id", "request", "response", "id_normalization_mapping"]
        assert list(data["request"]) == ["method", "url", "headers", "body", "endpoint", "model"]
        assert data["request"]["headers"] == {}
        assert path.name == f"{path.stem}.json" and len(path.stem) == 64
    assert set(files) == {
        ("/v1/chat/completions", True),
        ("/v1/chat/completions", False),
        ("/v1/embeddings", False),
        ("/v1/models", False),
    }
    streamed = files[("/v1/chat/completions", True)]
    assert streamed["test_id"] == test_id
    assert streamed["request"]["model"] == "gpt-4o"
    assert streamed["request"]["url"] == f"{loom_env['OPENAI_BASE_URL']}/chat/completions"
    assert {c["__type__"] for c in streamed["response"]["body"]} == {CHUNK_TYPE}
    chat = files[("/v1/chat/completions", False)]["response"]["body"]
    assert chat["__type__"] == "openai.types.chat.chat_completion.ChatCompletion"
    embed = files[("/v1/embeddings", False)]["response"]["body"]
    assert embed["__type__"] == "openai.types.create_embedding_response.CreateEmbeddingResponse"
    assert files[("/v1/models", False)]["test_id"] is None


# -- a replay miss ------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [True, False])
def test_replay_miss_is_an_openai_shaped_error_naming_the_key(
    tmp_path, no_network_base_url, stream
):
    test_id = "tests/e2e/test_chat_replay.py::miss"
    body = {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "What is the boiling point of quicksilver?"}],
        "stream": stream,
    }
    key = request_key("POST", "/v1/v1/chat/completions", body, test_id)
    with (
        run_loom(_replay_env(tmp_path, no_network_base_url, SHARED_RECORDINGS)) as loom,
        httpx.Client(base_url=loom.url, timeout=30) as client,
    ):
        response = client.post(
            "/v1/chat/completions", json=_loom_body(body), headers={TEST_ID_HEADER: test_id}
        )
        assert response.status_code == 502
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert error["code"] == "replay_miss"
        assert key in error["message"]
        assert test_id in error["message"]
        assert "Nearest recording: " in error["message"]

        sdk = openai.OpenAI(base_url=f"{loom.url}/v1", api_key="x", max_retries=0)
        with pytest.raises(openai.APIStatusError) as info:
            sdk.chat.completions.create(**_loom_body(body), extra_headers={TEST_ID_HEADER: test_id})
    assert info.value.status_code == 502
    assert key in info.value.message
