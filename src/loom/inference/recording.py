"""Record upstream inference exchanges to files, and replay them instead of calling a model.

Why: CI, Loom's own tests and users' apps must be able to run deterministically, offline,
with no API key. `RecordingProvider` wraps any provider. In `record` mode it forwards each
request and writes the exchange to `<directory>/<key>.json`; in `replay` mode it answers
from those files and never calls the upstream; `record-if-missing` replays what exists and
records the rest; `live` passes through.

The file format is the one in `shared/recordings/`:
`{test_id, request: {method, url, headers, body, endpoint, model},
response: {body, is_streaming}, id_normalization_mapping}`. A streamed body is the list of
chunks, each `{"__type__": <openai SDK type>, "__data__": <chunk dict>}`; replay yields the
`__data__` dicts exactly, so Loom sends the bytes it sent while recording. Request headers
are never written (they carry API keys).

The key (the file name) is the sha256 of `{"method", "endpoint": <upstream URL path>,
"body": <body with floats rounded to 5 places>, "test_id"}` as sorted-key JSON; `test_id`
(the `X-Loom-Test-Id` header) is left out when absent, and always for `/models`.
"""

from __future__ import annotations

import asyncio
import difflib
import hashlib
import json
import os
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import orjson

from loom.errors import LoomError
from loom.inference.base import Json, Provider

MODES = ("live", "record", "replay", "record-if-missing")

# The client's test id for the request being served (the API layer sets it from the
# `X-Loom-Test-Id` header); it separates recordings of identical requests by test.
current_test_id: ContextVar[str | None] = ContextVar("loom_test_id", default=None)

CHUNK_TYPE = "openai.types.chat.chat_completion_chunk.ChatCompletionChunk"
COMPLETION_TYPE = "openai.types.chat.chat_completion.ChatCompletion"
EMBEDDINGS_TYPE = "openai.types.create_embedding_response.CreateEmbeddingResponse"
MODEL_LIST_TYPE = "openai.pagination.AsyncPage"

# A replay miss reads at most this many recordings to name the nearest one.
NEAREST_SCAN_LIMIT = 1000
_WORD = re.compile(r"\w+")


class ReplayMissError(LoomError):
    """Replay found no recording for a request (a test-harness problem, not client input)."""

    status_code = 502
    error_type = "upstream_error"
    default_code = "replay_miss"


def round_floats(value: Any) -> Any:
    """A copy of a JSON value with every float rounded to 5 places."""
    if isinstance(value, float):
        return round(value, 5)
    if isinstance(value, dict):
        return {k: round_floats(v) for k, v in value.items()}
    if isinstance(value, list):
        return [round_floats(v) for v in value]
    return value


def request_key(method: str, url_path: str, body: Any, test_id: str | None = None) -> str:
    key: dict[str, Any] = {"method": method, "endpoint": url_path, "body": round_floats(body)}
    if test_id:
        key["test_id"] = test_id
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class _Request:
    method: str
    url: str
    endpoint: str  # the OpenAI endpoint, e.g. /v1/chat/completions
    body: Any
    test_id: str | None
    key: str
    type_name: str  # __type__ of the response body (of each chunk when streaming)


class RecordingProvider:
    def __init__(self, inner: Provider, mode: str, directory: Path):
        if mode not in MODES:
            raise ValueError(f"inference mode must be one of {MODES}, not {mode!r}")
        self.inner = inner
        self.mode = mode
        self.directory = Path(directory)
        self.name = inner.name
        self.base_url = inner.base_url
        self.native_custom_tools = getattr(inner, "native_custom_tools", False)
        self._replayed_models: list[str] | None = None
        self._recorded_models: list[str] | None = None

    # -- Provider -------------------------------------------------------------------------

    async def list_models(self) -> list[str] | None:
        if self.mode == "live":
            return await self.inner.list_models()
        req = self._request("GET", "/models", "/v1/models", None, MODEL_LIST_TYPE, False)
        if self.mode != "record":
            if self._replayed_models is not None:
                return self._replayed_models
            recorded = self._load(req)
            if recorded is not None:
                data = recorded["response"]["body"]["__data__"]["data"]
                self._replayed_models = [m["id"] for m in data]
                return self._replayed_models
            if self.mode == "replay":
                return None  # unknown: any model name is accepted
        models = await self.inner.list_models()
        if models is not None and models != self._recorded_models:
            listing = {
                "object": "list",
                "data": [
                    {"id": m, "object": "model", "created": 0, "owned_by": self.name}
                    for m in models
                ],
            }
            await self._save(req, {"__type__": req.type_name, "__data__": listing}, False)
            self._recorded_models = list(models)
        return models

    async def chat(self, body: Json) -> Json:
        req = self._request("POST", "/chat/completions", "/v1/chat/completions", body)
        return await self._exchange(req, lambda: self.inner.chat(body))

    async def embed(self, body: Json) -> Json:
        req = self._request("POST", "/embeddings", "/v1/embeddings", body, EMBEDDINGS_TYPE)
        return await self._exchange(req, lambda: self.inner.embed(body))

    def stream_chat(self, body: Json) -> AsyncIterator[Json]:
        if self.mode == "live":
            return self.inner.stream_chat(body)
        # The key is built now, in the caller's context (the test id is a contextvar).
        req = self._request("POST", "/chat/completions", "/v1/chat/completions", body, CHUNK_TYPE)
        return self._stream(req, body)

    async def aclose(self) -> None:
        await self.inner.aclose()

    # -- optional provider abilities, passed through -----------------------------------

    async def context_window(self, model: str) -> int | None:
        window = getattr(self.inner, "context_window", None)
        return await window(model) if window else None

    def __getattr__(self, name: str) -> Any:
        # `count_tokens` and `check_request` exist on some providers only.
        if name in ("count_tokens", "check_request"):
            return getattr(self.inner, name)
        raise AttributeError(name)

    # -- modes ----------------------------------------------------------------------------

    async def _exchange(self, req: _Request, call: Callable[[], Awaitable[Json]]) -> Json:
        if self.mode == "live":
            return await call()
        if self.mode != "record":
            recorded = self._load(req)
            if recorded is not None:
                return recorded["response"]["body"]["__data__"]
            if self.mode == "replay":
                raise await self._miss(req)
        result = await call()
        await self._save(req, {"__type__": req.type_name, "__data__": result}, False)
        return result

    async def _stream(self, req: _Request, body: Json) -> AsyncIterator[Json]:
        if self.mode != "record":
            recorded = self._load(req)
            if recorded is not None:
                for chunk in recorded["response"]["body"]:
                    yield chunk["__data__"]
                return
            if self.mode == "replay":
                raise await self._miss(req)
        received: list[bytes] = []  # serialized on arrival, so later mutation can't leak in
        stream = self.inner.stream_chat(body)
        try:
            async for chunk in stream:
                received.append(orjson.dumps(chunk))
                yield chunk
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()
        # Reached only when the stream ended normally: a broken stream records nothing.
        chunks = [{"__type__": req.type_name, "__data__": orjson.loads(c)} for c in received]
        await self._save(req, chunks, True)

    # -- files ----------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        endpoint: str,
        body: Any,
        type_name: str = COMPLETION_TYPE,
        with_test_id: bool = True,
    ) -> _Request:
        url = self.inner.base_url.rstrip("/") + path
        test_id = current_test_id.get() if with_test_id else None
        test_id = test_id or None
        key = request_key(method, urlparse(url).path, body, test_id)
        if self.mode in ("record", "record-if-missing") and body is not None:
            body = orjson.loads(orjson.dumps(body))  # the body as sent, kept for the file
        return _Request(method, url, endpoint, body, test_id, key, type_name)

    def _path(self, key: str) -> Path:
        return self.directory / f"{key}.json"

    def _load(self, req: _Request) -> Json | None:
        path = self._path(req.key)
        try:
            return orjson.loads(path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, orjson.JSONDecodeError) as exc:
            raise ReplayMissError(
                f"recording {path} is unreadable: {exc}", code="recording_unreadable"
            ) from None

    async def _save(self, req: _Request, response_body: Any, streaming: bool) -> None:
        document = {
            "test_id": req.test_id,
            "request": {
                "method": req.method,
                "url": req.url,
                "headers": {},
                "body": req.body,
                "endpoint": req.endpoint,
                "model": req.body.get("model") if isinstance(req.body, dict) else None,
            },
            "response": {"body": response_body, "is_streaming": streaming},
            "id_normalization_mapping": {},
        }
        text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
        await asyncio.to_thread(_write_atomically, self._path(req.key), text)

    # -- replay misses --------------------------------------------------------------------

    async def _miss(self, req: _Request) -> ReplayMissError:
        model = req.body.get("model") if isinstance(req.body, dict) else None
        message = (
            f"Replay miss: no recording {req.key}.json in {self.directory} for "
            f"{req.method} {urlparse(req.url).path} (endpoint {req.endpoint}, "
            f"model {model!r}, test id {req.test_id!r}). "
        )
        nearest = await asyncio.to_thread(self._nearest, req)
        if nearest is None:
            message += f"There is no recording for {req.endpoint} to compare with. "
        else:
            name, test_id, ratio = nearest
            message += f"Nearest recording: {name} (test id {test_id!r}, similarity {ratio:.2f}). "
        message += "Record it with LOOM_INFERENCE_MODE=record-if-missing or record."
        return ReplayMissError(message)

    def _nearest(self, req: _Request) -> tuple[str, str | None, float] | None:
        """The recording for the same endpoint whose body is most like this request's:
        same model first, then the most similar JSON (word diff), then the same test id."""
        wanted = _words(req.body)
        model = req.body.get("model") if isinstance(req.body, dict) else None
        best: tuple[tuple[bool, float, bool], str, str | None] | None = None
        try:
            names = sorted(p.name for p in self.directory.glob("*.json"))
        except OSError:
            return None
        for name in names[:NEAREST_SCAN_LIMIT]:
            try:
                data = orjson.loads((self.directory / name).read_bytes())
                request = data["request"]
                if request.get("endpoint") != req.endpoint:
                    continue
                body = request.get("body")
            except (OSError, orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
                continue
            same_model = isinstance(body, dict) and body.get("model") == model
            matcher = difflib.SequenceMatcher(None, wanted, _words(body))
            if best is not None and (same_model, matcher.quick_ratio()) < best[0][:2]:
                continue
            score = (same_model, matcher.ratio(), data.get("test_id") == req.test_id)
            if best is None or score > best[0]:
                best = (score, name, data.get("test_id"))
        return None if best is None else (best[1], best[2], best[0][1])


def _words(body: Any) -> list[str]:
    """The words of a body's JSON: what a line diff of short bodies would miss."""
    return _WORD.findall(json.dumps(body, sort_keys=True, ensure_ascii=False))


def _write_atomically(path: Path, text: str) -> None:
    """Write to a unique temp file beside `path`, then rename: readers never see half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "x", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
