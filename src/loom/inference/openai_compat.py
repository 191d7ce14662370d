"""A provider for any OpenAI-compatible HTTP endpoint (OpenAI, vLLM, Ollama, llama.cpp, ...).

The hot path reads the upstream's SSE with httpx and decodes each chunk with orjson into a
plain dict; the `openai` client library is deliberately not used here, because turning
every chunk into pydantic objects is the largest cost such servers pay.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator

import httpx
import orjson

from loom.errors import UpstreamError, UpstreamTimeoutError
from loom.inference.base import Json
from loom.inference.sse_reader import iter_sse_json

_MODEL_LIST_TTL = 60.0
_POOLS = 8
# Where OpenAI-compatible servers put a model's context window in their `/models` entries.
_WINDOW_KEYS = ("context_window", "context_length", "max_model_len", "max_context_length")


class OpenAICompatProvider:
    def __init__(
        self,
        name: str,
        base_url: str,
        api_key: str | None = None,
        models: list[str] | None = None,
        timeout: float = 600.0,
        connect_timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        native_custom_tools: bool = False,
        context_windows: dict[str, int] | None = None,
    ):
        self.name = name
        self.native_custom_tools = native_custom_tools  # chat `custom` tools are understood
        self.base_url = base_url.rstrip("/")
        self._static_models = list(models) if models else None
        self._windows = dict(context_windows or {})
        self._listed: tuple[float, tuple[list[str] | None, dict[str, int]]] | None = None
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        # Several small connection pools instead of one big one: httpcore scans every
        # pooled connection (and, for idle ones, every connection again) each time a
        # request starts or ends, so one pool's cost grows with the square of the number
        # of concurrent streams. Requests go round-robin over the pools.
        self._clients = [
            httpx.AsyncClient(
                base_url=self.base_url,
                headers=headers,
                timeout=httpx.Timeout(timeout, connect=connect_timeout),
                limits=httpx.Limits(max_connections=250, max_keepalive_connections=50),
                transport=transport,
            )
            for _ in range(_POOLS)
        ]
        self._next_pool = itertools.cycle(self._clients)

    @property
    def _client(self) -> httpx.AsyncClient:
        return next(self._next_pool)

    # -- errors ---------------------------------------------------------------------------

    def _transport_error(self, exc: httpx.HTTPError) -> UpstreamError:
        where = f"provider '{self.name}' at {self.base_url}"
        if isinstance(exc, httpx.TimeoutException):
            return UpstreamTimeoutError(f"{where} timed out ({type(exc).__name__})")
        return UpstreamError(f"{where} is unreachable: {type(exc).__name__}: {exc}")

    def _status_error(self, status: int, body: bytes) -> UpstreamError:
        detail = body[:2000].decode("utf-8", "replace")
        code = None
        try:
            parsed = orjson.loads(body)
            err = parsed.get("error") if isinstance(parsed, dict) else None
            if isinstance(err, dict) and err.get("message"):
                detail = str(err["message"])
            elif isinstance(err, str):
                detail = err
            # A context that does not fit keeps OpenAI's code, so clients can react to it.
            if isinstance(err, dict) and err.get("code") == "context_length_exceeded":
                code = "context_length_exceeded"
        except orjson.JSONDecodeError:
            pass
        return UpstreamError(
            f"provider '{self.name}' returned HTTP {status}: {detail}", status=status, code=code
        )

    # -- Provider -------------------------------------------------------------------------

    async def list_models(self) -> list[str] | None:
        if self._static_models is not None:
            return self._static_models
        return (await self._listing())[0]

    async def context_window(self, model: str) -> int | None:
        """The model's context window in tokens: from the configuration, else (unless the
        models are configured too) from what the upstream's `/models` says (OpenRouter's
        `context_length`, vLLM's `max_model_len`, LM Studio's `max_context_length`, or
        `context_window`), else None."""
        if model in self._windows:
            return self._windows[model]
        if self._static_models is not None:  # models are configured: /models is not asked
            return None
        return (await self._listing())[1].get(model)

    async def _listing(self) -> tuple[list[str] | None, dict[str, int]]:
        now = time.monotonic()
        if self._listed and now - self._listed[0] < _MODEL_LIST_TTL:
            return self._listed[1]
        windows: dict[str, int] = {}
        try:
            response = await self._client.get("/models")
            response.raise_for_status()
            entries = orjson.loads(response.content).get("data", [])
            listed = [m["id"] for m in entries]
            for entry in entries:
                window = next((entry[k] for k in _WINDOW_KEYS if k in entry), None)
                if isinstance(window, int) and not isinstance(window, bool) and window > 0:
                    windows[entry["id"]] = window
        except (httpx.HTTPError, orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
            listed = None
        self._listed = (now, (listed, windows))
        return listed, windows

    async def chat(self, body: Json) -> Json:
        return await self._post_json("/chat/completions", body)

    async def embed(self, body: Json) -> Json:
        return await self._post_json("/embeddings", body)

    async def _post_json(self, path: str, body: Json) -> Json:
        try:
            response = await self._client.post(
                path, content=orjson.dumps(body), headers={"Content-Type": "application/json"}
            )
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from None
        if response.status_code >= 400:
            raise self._status_error(response.status_code, response.content)
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError:
            raise UpstreamError(
                f"provider '{self.name}' returned a body that is not JSON"
            ) from None

    async def stream_chat(self, body: Json) -> AsyncIterator[Json]:
        client = self._client
        request = client.build_request(
            "POST",
            "/chat/completions",
            content=orjson.dumps(body),
            headers={"Content-Type": "application/json", "Accept": "text/event-stream"},
        )
        try:
            response = await client.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from None
        try:
            if response.status_code >= 400:
                raise self._status_error(response.status_code, await response.aread())
            try:
                async for chunk in iter_sse_json(response.aiter_bytes()):
                    if isinstance(chunk, dict) and "error" in chunk and "choices" not in chunk:
                        err = chunk["error"]
                        message = err.get("message") if isinstance(err, dict) else str(err)
                        raise UpstreamError(f"provider '{self.name}' failed mid-stream: {message}")
                    yield chunk
            except httpx.HTTPError as exc:
                raise self._transport_error(exc) from None
            except orjson.JSONDecodeError:
                raise UpstreamError(
                    f"provider '{self.name}' streamed a chunk that is not JSON"
                ) from None
        finally:
            await response.aclose()

    async def aclose(self) -> None:
        for client in self._clients:
            await client.aclose()
