"""RecordingProvider: keys, the shared file format, and the four modes."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from loom.errors import LoomError, UpstreamError
from loom.inference.base import Provider
from loom.inference.recording import (
    CHUNK_TYPE,
    COMPLETION_TYPE,
    EMBEDDINGS_TYPE,
    RecordingProvider,
    ReplayMissError,
    current_test_id,
    request_key,
    round_floats,
)
from tests.support.shared import SHARED_RECORDINGS, read_shared_json

SHARED = SHARED_RECORDINGS
SHARED_FILE = SHARED / "cdc628da240d62f71111f8e560f56d9fa3c0e3042f45ce5d5bc3075e3ba32574.json"
RECORDED_BASE_URL = "https://api.openai.com/v1/v1"
SECRET = "sk-test-secret-never-recorded"


def _chunk(i: int, text: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}],
        "usage": {"prompt_tokens": i, "ratio": 0.1234567891},
    }


class FakeInner:
    """A provider that counts calls; with `broken_after` its stream fails midway."""

    def __init__(self, base_url: str = "http://upstream.test/v1", broken_after: int | None = None):
        self.name = "fake"
        self.base_url = base_url
        self.api_key = SECRET
        self.headers = {"Authorization": f"Bearer {SECRET}"}
        self.broken_after = broken_after
        self.calls: list[str] = []
        self.chunks = [_chunk(i, t) for i, t in enumerate(["Hel", "lo", " wörld"])]

    async def list_models(self) -> list[str] | None:
        self.calls.append("list_models")
        return ["m", "m2"]

    async def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append("chat")
        return {"id": "chatcmpl-2", "object": "chat.completion", "echo": body["messages"]}

    async def stream_chat(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        self.calls.append("stream_chat")
        for n, chunk in enumerate(self.chunks):
            if n == self.broken_after:
                raise UpstreamError("provider 'fake' failed mid-stream: boom")
            yield chunk

    async def embed(self, body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append("embed")
        return {"object": "list", "data": [{"embedding": [0.5, 0.25], "index": 0}]}

    async def aclose(self) -> None:
        self.calls.append("aclose")


class NoCalls(FakeInner):
    """An inner provider that must never be reached (replay never calls live)."""

    async def chat(self, body):
        raise AssertionError("replay called the upstream")

    async def embed(self, body):
        raise AssertionError("replay called the upstream")

    async def list_models(self):
        raise AssertionError("replay called the upstream")

    async def stream_chat(self, body):
        raise AssertionError("replay called the upstream")
        yield {}


def _body(text: str = "hi", **extra: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": text}], **extra}


async def _collect(stream: AsyncIterator[dict[str, Any]]) -> list[dict[str, Any]]:
    return [chunk async for chunk in stream]


@pytest.fixture
def test_id():
    token = current_test_id.set("tests/unit::case[1]")
    yield "tests/unit::case[1]"
    current_test_id.reset(token)


def _only_file(directory: Path) -> tuple[Path, dict[str, Any]]:
    files = list(directory.iterdir())
    assert len(files) == 1, files
    return files[0], json.loads(files[0].read_text())


# -- keys -----------------------------------------------------------------------------------


def test_key_reproduces_shared_recording_name():
    data = read_shared_json(SHARED_FILE)
    key = request_key("POST", "/v1/v1/chat/completions", data["request"]["body"], data["test_id"])
    assert f"{key}.json" == SHARED_FILE.name


async def test_replay_of_shared_recording_through_the_provider():
    data = read_shared_json(SHARED_FILE)
    provider = RecordingProvider(NoCalls(RECORDED_BASE_URL), "replay", SHARED)
    assert isinstance(provider, Provider)
    token = current_test_id.set(data["test_id"])
    try:
        chunks = await _collect(provider.stream_chat(data["request"]["body"]))
    finally:
        current_test_id.reset(token)
    assert chunks == [c["__data__"] for c in data["response"]["body"]]
    assert provider.name == "fake" and provider.base_url == RECORDED_BASE_URL


def test_key_without_test_id_omits_the_field():
    body = _body()
    expected = json.dumps(
        {"method": "POST", "endpoint": "/v1/chat/completions", "body": body}, sort_keys=True
    )
    assert request_key("POST", "/v1/chat/completions", body) == (
        hashlib.sha256(expected.encode()).hexdigest()
    )
    assert request_key("POST", "/v1/chat/completions", body, None) != request_key(
        "POST", "/v1/chat/completions", body, "t"
    )


def test_floats_are_rounded_to_five_places():
    assert round_floats({"a": 0.1234567, "b": [1.000004, 2, True, "0.1234567"]}) == {
        "a": 0.12346,
        "b": [1.0, 2, True, "0.1234567"],
    }
    key = lambda t: request_key("POST", "/v1/chat/completions", _body(temperature=t))  # noqa: E731
    assert key(0.7) == key(0.700000001)
    assert key(0.7) != key(0.70001)


# -- record ---------------------------------------------------------------------------------


async def test_record_stream_writes_the_shared_format_without_headers(tmp_path, test_id):
    inner = FakeInner()
    provider = RecordingProvider(inner, "record", tmp_path)
    body = _body(stream=True, temperature=0.30000000001)
    chunks = await _collect(provider.stream_chat(body))
    assert chunks == inner.chunks

    path, data = _only_file(tmp_path)
    key = request_key("POST", "/v1/chat/completions", body, test_id)
    assert path.name == f"{key}.json"
    assert list(data) == ["test_id", "request", "response", "id_normalization_mapping"]
    assert data["test_id"] == test_id
    assert data["request"] == {
        "method": "POST",
        "url": "http://upstream.test/v1/chat/completions",
        "headers": {},
        "body": body,
        "endpoint": "/v1/chat/completions",
        "model": "m",
    }
    assert data["response"]["is_streaming"] is True
    assert data["response"]["body"] == [{"__type__": CHUNK_TYPE, "__data__": c} for c in chunks]
    assert data["id_normalization_mapping"] == {}
    text = path.read_text(encoding="utf-8")
    assert SECRET not in text and "Authorization" not in text
    assert text.startswith('{\n  "test_id"')  # pretty-printed, indent=2
    assert "wörld" in text


async def test_record_chat_embeddings_and_models(tmp_path, test_id):
    inner = FakeInner()
    provider = RecordingProvider(inner, "record", tmp_path)
    completion = await provider.chat(_body())
    embedding = await provider.embed({"model": "e", "input": "x"})
    assert await provider.list_models() == ["m", "m2"]
    assert await provider.list_models() == ["m", "m2"]  # unchanged: not rewritten

    by_endpoint = {}
    for path in tmp_path.iterdir():
        data = json.loads(path.read_text())
        by_endpoint[data["request"]["endpoint"]] = (path.stem, data)
    assert set(by_endpoint) == {"/v1/chat/completions", "/v1/embeddings", "/v1/models"}

    key, data = by_endpoint["/v1/chat/completions"]
    assert data["response"] == {
        "body": {"__type__": COMPLETION_TYPE, "__data__": completion},
        "is_streaming": False,
    }
    key, data = by_endpoint["/v1/embeddings"]
    assert key == request_key("POST", "/v1/embeddings", {"model": "e", "input": "x"}, test_id)
    assert data["request"]["url"] == "http://upstream.test/v1/embeddings"
    assert data["response"]["body"] == {"__type__": EMBEDDINGS_TYPE, "__data__": embedding}
    key, data = by_endpoint["/v1/models"]
    assert key == request_key("GET", "/v1/models", None)  # never with the test id
    assert data["test_id"] is None
    assert [m["id"] for m in data["response"]["body"]["__data__"]["data"]] == ["m", "m2"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left


async def test_broken_or_abandoned_stream_writes_no_file(tmp_path):
    provider = RecordingProvider(FakeInner(broken_after=2), "record", tmp_path)
    received = []
    with pytest.raises(UpstreamError):
        async for chunk in provider.stream_chat(_body(stream=True)):
            received.append(chunk)
    assert len(received) == 2
    assert list(tmp_path.iterdir()) == []

    stream = RecordingProvider(FakeInner(), "record", tmp_path).stream_chat(_body(stream=True))
    await anext(stream)
    await stream.aclose()
    assert list(tmp_path.iterdir()) == []


# -- replay ---------------------------------------------------------------------------------


async def test_replay_yields_the_recorded_chunks(tmp_path, test_id):
    recorder = RecordingProvider(FakeInner(), "record", tmp_path)
    body = _body(stream=True)
    recorded = await _collect(recorder.stream_chat(body))
    completion = await recorder.chat(_body())
    embedding = await recorder.embed({"model": "e", "input": ["a", "b"]})
    await recorder.list_models()

    replayer = RecordingProvider(NoCalls(), "replay", tmp_path)
    replayed = await _collect(replayer.stream_chat(body))
    assert json.dumps(replayed) == json.dumps(recorded)
    assert await replayer.chat(_body()) == completion
    assert await replayer.embed({"model": "e", "input": ["a", "b"]}) == embedding
    assert await replayer.list_models() == ["m", "m2"]


async def test_replay_without_models_recording_means_unknown(tmp_path):
    assert await RecordingProvider(NoCalls(), "replay", tmp_path).list_models() is None


async def test_test_id_separates_recordings(tmp_path, test_id):
    await RecordingProvider(FakeInner(), "record", tmp_path).chat(_body())
    replayer = RecordingProvider(NoCalls(), "replay", tmp_path)
    assert await replayer.chat(_body())
    token = current_test_id.set(None)
    try:
        with pytest.raises(ReplayMissError):
            await replayer.chat(_body())
    finally:
        current_test_id.reset(token)


async def test_replay_miss_names_key_test_id_endpoint_and_nearest(tmp_path, test_id):
    recorder = RecordingProvider(FakeInner(), "record", tmp_path)
    await _collect(recorder.stream_chat(_body("what is the boiling point of water?", stream=True)))
    await _collect(recorder.stream_chat(_body("something else entirely", stream=True)))
    await recorder.embed({"model": "m", "input": "what is the boiling point of water?"})
    nearest = request_key(
        "POST",
        "/v1/chat/completions",
        _body("what is the boiling point of water?", stream=True),
        test_id,
    )

    replayer = RecordingProvider(NoCalls(), "replay", tmp_path)
    missing = _body("what is the boiling point of milk?", stream=True)
    stream = replayer.stream_chat(missing)
    with pytest.raises(ReplayMissError) as info:
        await anext(stream)  # fails before the first chunk, so the route can answer an error
    err = info.value
    key = request_key("POST", "/v1/chat/completions", missing, test_id)
    assert isinstance(err, LoomError)
    assert err.status_code == 502 and err.code == "replay_miss"
    assert key in err.message
    assert f"Nearest recording: {nearest}.json" in err.message
    assert test_id in err.message
    assert "/v1/chat/completions" in err.message
    assert err.to_dict()["error"]["code"] == "replay_miss"


async def test_replay_miss_on_shared_recordings_points_at_the_closest(test_id):
    data = read_shared_json(SHARED_FILE)
    body = json.loads(json.dumps(data["request"]["body"]))
    body["messages"][-1]["content"][0]["text"] = "-99"
    token = current_test_id.set(data["test_id"])
    try:
        with pytest.raises(ReplayMissError) as info:
            await _collect(
                RecordingProvider(NoCalls(RECORDED_BASE_URL), "replay", SHARED).stream_chat(body)
            )
    finally:
        current_test_id.reset(token)
    assert f"Nearest recording: {SHARED_FILE.name}" in info.value.message


async def test_replay_miss_in_empty_directory(tmp_path):
    with pytest.raises(ReplayMissError) as info:
        await RecordingProvider(NoCalls(), "replay", tmp_path / "absent").chat(_body())
    assert "no recording for /v1/chat/completions" in info.value.message


# -- record-if-missing and live ---------------------------------------------------------------


async def test_record_if_missing_records_once_then_replays(tmp_path, test_id):
    inner = FakeInner()
    provider = RecordingProvider(inner, "record-if-missing", tmp_path)
    first = await _collect(provider.stream_chat(_body(stream=True)))
    second = await _collect(provider.stream_chat(_body(stream=True)))
    assert first == second
    assert await provider.chat(_body()) == await provider.chat(_body())
    assert await provider.list_models() == await provider.list_models() == ["m", "m2"]
    assert inner.calls == ["stream_chat", "chat", "list_models"]
    assert len(list(tmp_path.iterdir())) == 3


async def test_record_mode_always_calls_upstream(tmp_path):
    inner = FakeInner()
    provider = RecordingProvider(inner, "record", tmp_path)
    await provider.chat(_body())
    await provider.chat(_body())
    assert inner.calls == ["chat", "chat"]


async def test_live_passes_through(tmp_path):
    inner = FakeInner()
    provider = RecordingProvider(inner, "live", tmp_path)
    assert await _collect(provider.stream_chat(_body(stream=True))) == inner.chunks
    await provider.chat(_body())
    await provider.aclose()
    assert inner.calls == ["stream_chat", "chat", "aclose"]
    assert list(tmp_path.iterdir()) == []


def test_unknown_mode_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="inference mode"):
        RecordingProvider(FakeInner(), "replay-ish", tmp_path)
