"""A provider for any OpenAI-compatible HTTP endpoint (OpenAI, vLLM, Ollama, llama.cpp, ...).

The hot path reads the upstream's SSE with aiohttp (whose HTTP parser is C: llhttp) and
decodes each chunk with orjson into a plain dict. The `openai` client library is
deliberately not used here, because turning every chunk into pydantic objects is the
largest cost such servers pay; nor is httpx, whose pure-Python h11 parser cost about 3 ms
of CPU per 64-chunk stream against aiohttp's 0.6 ms (see bench/README.md).

Resilience lives here too, because only the provider knows when the first chunk has come:
- before the first chunk, connect errors, torn streams and 429/5xx answers are retried
  with exponential backoff (a 429's Retry-After is honoured up to a cap; a longer one is
  passed on to the client as a 429 with that Retry-After);
- a first-token timeout (request sent, no chunk yet) and an idle timeout between chunks
  end the call with `UpstreamTimeoutError` (code `upstream_timeout`);
- a circuit breaker per provider fails fast while the upstream keeps failing.
After the first chunk nothing is retried: the caller ends the response `failed`.
"""

from __future__ import annotations

import asyncio
import time
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

import aiohttp
import orjson
from yarl import URL

from loom.errors import UpstreamError, UpstreamRateLimitError, UpstreamTimeoutError
from loom.inference.base import Json
from loom.inference.circuit_breaker import CircuitBreaker
from loom.inference.sse_reader import iter_sse_json
from loom.inference.stall_guard import StallGuard

_MODEL_LIST_TTL = 60.0
_RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})
# What the HTTP client raises when the upstream cannot be reached or read: aiohttp's errors,
# and TimeoutError for its connect and read limits.
_TRANSPORT_ERRORS = (aiohttp.ClientError, TimeoutError)


@dataclass(frozen=True)
class Resilience:
    """How hard a provider tries before it gives up; see `ProviderSettings`."""

    max_retries: int = 2
    retry_backoff: float = 0.5
    retry_after_cap: float = 20.0
    first_token_timeout: float = 120.0
    idle_timeout: float = 60.0
    breaker_threshold: int = 5
    breaker_cooldown: float = 30.0


class _Attempt(Exception):
    """One try that failed before the first chunk: the error, and what may follow."""

    def __init__(
        self,
        error: UpstreamError,
        *,
        retry: bool,
        upstream_down: bool,
        retry_after: str | None = None,
    ):
        self.error = error
        self.retry = retry
        self.upstream_down = upstream_down  # counts toward the circuit breaker
        self.retry_after = retry_after  # the upstream's Retry-After header, if any


def _retry_after_seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None  # an HTTP date: not worth parsing, the backoff applies


# Where OpenAI-compatible servers put a model's context window in their `/models` entries.
_WINDOW_KEYS = ("context_window", "context_length", "max_model_len", "max_context_length")


def _env_proxy(url: str) -> str | None:
    """The proxy the environment (HTTP_PROXY, HTTPS_PROXY, NO_PROXY) names for `url`, as
    httpx and requests read it; found once, as the upstream's address does not change."""
    parts = urllib.parse.urlsplit(url)
    if parts.hostname and urllib.request.proxy_bypass(parts.hostname):
        return None
    return urllib.request.getproxies().get(parts.scheme)


class OpenAICompatProvider:
    def __init__(
        self,
        name: str,
        base_url: str,
        api_key: str | None = None,
        models: list[str] | None = None,
        timeout: float = 600.0,
        connect_timeout: float = 10.0,
        resilience: Resilience | None = None,
        native_custom_tools: bool = False,
        context_windows: dict[str, int] | None = None,
    ):
        self.name = name
        self.native_custom_tools = native_custom_tools  # chat `custom` tools are understood
        self.base_url = base_url.rstrip("/")
        self._static_models = list(models) if models else None
        self._windows = dict(context_windows or {})
        self._listed: tuple[float, tuple[list[str] | None, dict[str, int]]] | None = None
        self.resilience = resilience or Resilience()
        self.breaker = CircuitBreaker(
            name, self.resilience.breaker_threshold, self.resilience.breaker_cooldown
        )
        # Built once: the URLs, headers and limits every request uses.
        auth = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._json_headers = {**auth, "Content-Type": "application/json"}
        self._sse_headers = {**self._json_headers, "Accept": "text/event-stream"}
        self._get_headers = auth
        self._urls = {
            path: URL(self.base_url + path) for path in ("/chat/completions", "/embeddings")
        }
        self._models_url = URL(self.base_url + "/models")
        # `timeout` bounds each wait for the upstream (as httpx's read timeout did), not the
        # whole call: a long stream is fine while chunks keep coming.
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=connect_timeout, sock_read=timeout
        )
        self._session: aiohttp.ClientSession | None = None
        self._proxy = _env_proxy(self.base_url)

    @property
    def _client(self) -> aiohttp.ClientSession:
        """The session, made on first use: it belongs to the running event loop."""
        session = self._session
        if session is None or session.closed:
            session = self._session = aiohttp.ClientSession(
                # No limit here: the turn admission limit bounds the streams in flight.
                connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300),
                timeout=self._timeout,
                trust_env=False,  # the proxy is looked up once, below; no .netrc per request
            )
        return session

    # -- errors ---------------------------------------------------------------------------

    def _transport_error(self, exc: BaseException) -> UpstreamError:
        where = f"provider '{self.name}' at {self.base_url}"
        if isinstance(exc, TimeoutError):
            return UpstreamTimeoutError(f"{where} timed out ({type(exc).__name__})")
        return UpstreamError(f"{where} is unreachable: {type(exc).__name__}: {exc}")

    def _stream_error(self, exc: Exception) -> UpstreamError:
        """What reading an open stream can raise, as the error the client sees."""
        if isinstance(exc, UpstreamError):
            return exc
        if isinstance(exc, _TRANSPORT_ERRORS):
            if isinstance(exc, TimeoutError):
                return self._transport_error(exc)
            return UpstreamError(
                f"provider '{self.name}' broke off the stream: {type(exc).__name__}: {exc}"
            )
        return UpstreamError(f"provider '{self.name}' streamed a chunk that is not JSON")

    def _status_error(self, status: int, headers: Mapping[str, str], body: bytes) -> UpstreamError:
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
        message = f"provider '{self.name}' returned HTTP {status}: {detail}"
        if status == 429:
            return UpstreamRateLimitError(message, retry_after=headers.get("retry-after"))
        return UpstreamError(message, status=status, code=code)

    def _attempt_failed(self, exc: BaseException) -> _Attempt:
        if isinstance(exc, _Attempt):
            return exc
        if isinstance(exc, TimeoutError):
            retry = isinstance(exc, aiohttp.ConnectionTimeoutError)
            return _Attempt(self._transport_error(exc), retry=retry, upstream_down=True)
        if isinstance(exc, aiohttp.ClientError):  # refused, reset, torn before the first chunk
            return _Attempt(self._transport_error(exc), retry=True, upstream_down=True)
        error = self._stream_error(exc)  # type: ignore[arg-type]
        return _Attempt(error, retry=False, upstream_down=False)

    def _status_attempt(self, response: aiohttp.ClientResponse, body: bytes) -> _Attempt:
        status = response.status
        return _Attempt(
            self._status_error(status, response.headers, body),
            retry=status in _RETRIED_STATUSES,
            upstream_down=status >= 500,
            retry_after=response.headers.get("retry-after"),
        )

    def _retry_delay(self, attempt: int, failed: _Attempt) -> float | None:
        """Seconds to wait before retrying, or None to give up now."""
        policy = self.resilience
        if not failed.retry or attempt >= policy.max_retries:
            return None
        asked = _retry_after_seconds(failed.retry_after)
        if asked is not None:
            # Longer than we may wait: the client gets the error (a 429 keeps its Retry-After).
            return asked if asked <= policy.retry_after_cap else None
        return policy.retry_backoff * (2**attempt)

    async def _with_retries(self, attempt_once):
        """Run `attempt_once()` under the breaker, retrying what may be retried. A call
        counts once for the breaker, however many attempts it took."""
        probe = self.breaker.before_call()
        attempt = 0
        while True:
            try:
                result = await attempt_once()
            except (*_TRANSPORT_ERRORS, UpstreamError, _Attempt, orjson.JSONDecodeError) as exc:
                failed = self._attempt_failed(exc)
                delay = self._retry_delay(attempt, failed)
                if delay is None:
                    if failed.upstream_down:
                        self.breaker.failed()
                    else:
                        self.breaker.released(probe)
                    raise failed.error from None
                attempt += 1
                try:
                    await asyncio.sleep(delay)
                except BaseException:
                    self.breaker.released(probe)
                    raise
                continue
            except BaseException:
                self.breaker.released(probe)
                raise
            self.breaker.succeeded()
            return result

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
            async with self._client.get(
                self._models_url, headers=self._get_headers, proxy=self._proxy
            ) as response:
                response.raise_for_status()
                entries = orjson.loads(await response.read()).get("data", [])
            listed = [m["id"] for m in entries]
            for entry in entries:
                window = next((entry[k] for k in _WINDOW_KEYS if k in entry), None)
                if isinstance(window, int) and not isinstance(window, bool) and window > 0:
                    windows[entry["id"]] = window
        except (*_TRANSPORT_ERRORS, orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
            listed = None
        self._listed = (now, (listed, windows))
        return listed, windows

    async def chat(self, body: Json) -> Json:
        return await self._post_json("/chat/completions", body)

    async def embed(self, body: Json) -> Json:
        return await self._post_json("/embeddings", body)

    async def _post_json(self, path: str, body: Json) -> Json:
        content = orjson.dumps(body)
        url = self._urls[path]

        async def once() -> bytes:
            async with self._client.post(
                url, data=content, headers=self._json_headers, proxy=self._proxy
            ) as r:
                data = await r.read()
                if r.status >= 400:
                    raise self._status_attempt(r, data)
                return data

        data = await self._with_retries(once)
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            raise UpstreamError(
                f"provider '{self.name}' returned a body that is not JSON"
            ) from None

    async def _open_stream(
        self, content: bytes, guard: StallGuard
    ) -> tuple[aiohttp.ClientResponse, AsyncIterator[Json], Json | None]:
        """Send the request and read up to the first chunk, within the first-token limit."""
        limit = self.resilience.first_token_timeout
        guard.wait(limit)
        response: aiohttp.ClientResponse | None = None
        try:
            response = await self._client.post(
                self._urls["/chat/completions"],
                data=content,
                headers=self._sse_headers,
                proxy=self._proxy,
            )
            if response.status >= 400:
                raise self._status_attempt(response, await response.read())
            chunks = iter_sse_json(response.content.iter_any())
            first = await anext(chunks, None)
            if first is not None:
                self._check_chunk(first)
            guard.done()
            return response, chunks, first
        except asyncio.CancelledError:
            if guard.expired:
                guard.absorb()  # before any other await: the task is no longer cancelled
            if response is not None:
                response.close()
            if not guard.expired:
                raise
            raise _Attempt(
                UpstreamTimeoutError(
                    f"provider '{self.name}' sent no first token within {limit:g}s"
                ),
                retry=False,
                upstream_down=True,
            ) from None
        except BaseException:
            guard.done()
            if response is not None:
                response.close()
            raise

    def _check_chunk(self, chunk: object) -> None:
        """Raise for an error event or anything that is not a chunk object."""
        if type(chunk) is not dict:
            raise UpstreamError(f"provider '{self.name}' streamed a chunk that is not an object")
        if "error" in chunk and "choices" not in chunk:
            err = chunk["error"]
            message = err.get("message") if isinstance(err, dict) else str(err)
            raise UpstreamError(f"provider '{self.name}' failed mid-stream: {message}")

    async def stream_chat(self, body: Json) -> AsyncIterator[Json]:
        content = orjson.dumps(body)
        guard = StallGuard()
        try:
            response, chunks, first = await self._with_retries(
                lambda: self._open_stream(content, guard)
            )
        except BaseException:
            guard.close()
            raise
        idle = self.resilience.idle_timeout
        try:
            if first is None:
                return
            yield first
            # The guard is open only while waiting on the upstream, never across a yield.
            guard.wait(idle)
            async for chunk in chunks:
                guard.done()
                if type(chunk) is not dict or "error" in chunk:
                    self._check_chunk(chunk)
                yield chunk
                guard.wait(idle)
            guard.done()
        except asyncio.CancelledError:
            if not guard.expired:
                raise
            guard.absorb()
            self.breaker.failed()
            raise UpstreamTimeoutError(
                f"provider '{self.name}' stalled: no chunk for {idle:g}s mid-stream"
            ) from None
        except (*_TRANSPORT_ERRORS, orjson.JSONDecodeError) as exc:
            raise self._stream_error(exc) from None
        finally:
            guard.close()
            await chunks.aclose()
            # Read to its end (iter_sse_json reads past [DONE]): the connection is reused;
            # otherwise it is closed.
            response.release()

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
