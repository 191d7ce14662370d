"""The load generator's HTTP client: one keep-alive HTTP/1.1 connection per simulated client,
pre-encoded requests, and httptools' C parser for the answers.

Three processes share the machine's cores during a benchmark (the fake upstream, Loom and
this one), so the client must cost far less than what it measures: httpx spent most of a
core driving 128 streams, which queued requests inside the load generator and bounded the
"direct" figures. Here a request is one write of bytes built once, and an answer is parsed
in C; the body is only scanned for two markers (the first token, the end of the stream), in
the raw bytes as they arrive, never parsed as SSE or JSON.
"""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit

import httptools


class HttpError(Exception):
    """The connection failed, or the answer was not a well-formed HTTP response."""


def encode_request(url: str, body: bytes, headers: dict[str, str] | None = None) -> bytes:
    """A `POST url` with a JSON body, as the bytes sent on the wire (built once per target)."""
    parts = urlsplit(url)
    lines = [
        f"POST {parts.path or '/'} HTTP/1.1",
        f"Host: {parts.netloc}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        *(f"{name}: {value}" for name, value in (headers or {}).items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


HEAD_BYTES = 1024


class _Exchange:
    """What one answer is being read for: its status, body, and when a marker first came."""

    __slots__ = (
        "body",
        "done",
        "end_marker",
        "ended",
        "first_at",
        "head",
        "keep_body",
        "marker",
        "seen",
        "status",
        "tail",
        "watch",
    )

    def __init__(
        self,
        marker: bytes | None,
        end_marker: bytes | None,
        keep_body: bool,
        watch: tuple[bytes, ...] = (),
    ) -> None:
        self.marker = marker
        self.end_marker = end_marker
        self.first_at: float | None = None
        self.ended = end_marker is None
        self.status = 0
        self.keep_body = keep_body  # an error's body is kept whatever this says
        self.body: list[bytes] = []
        self.head = b""  # the body's first HEAD_BYTES, whatever keep_body says
        self.watch = watch  # more markers to look for; those found go into `seen`
        self.seen: set[bytes] = set()
        self.tail = b""  # the end of the last block, for a marker split across two blocks
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def feed(self, data: bytes) -> None:
        if self.keep_body or self.status >= 400:
            self.body.append(data)
        if len(self.head) < HEAD_BYTES:
            self.head += data[: HEAD_BYTES - len(self.head)]
        if self.first_at is not None and self.ended and not self.watch:
            return
        window = self.tail + data
        if self.first_at is None and self.marker is not None and self.marker in window:
            self.first_at = time.perf_counter()
        if not self.ended and self.end_marker is not None and self.end_marker in window:
            self.ended = True
        if self.watch:
            self.seen.update(m for m in self.watch if m in window)
        self.tail = window[-64:]


class Connection(asyncio.Protocol):
    """One keep-alive connection; one request at a time."""

    def __init__(self) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self._exchange: _Exchange | None = None
        self._stop_at_marker = False
        self.closed = False

    # -- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(HttpError(f"bad HTTP response: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(HttpError(f"connection closed: {exc or 'by the server'}"))

    # -- httptools callbacks
    def on_headers_complete(self) -> None:
        if self._exchange is not None:
            self._exchange.status = self._parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        exchange = self._exchange
        if exchange is None:
            return
        exchange.feed(body)
        if self._stop_at_marker and exchange.first_at is not None:
            # The client walks away mid-answer: the connection goes with it.
            self._exchange = None
            self.close()
            self.closed = True
            if not exchange.done.done():
                exchange.done.set_result(None)

    def on_message_complete(self) -> None:
        exchange, self._exchange = self._exchange, None
        if exchange is not None and not exchange.done.done():
            exchange.done.set_result(None)

    def _fail(self, exc: Exception) -> None:
        exchange, self._exchange = self._exchange, None
        if exchange is not None and not exchange.done.done():
            exchange.done.set_exception(exc)

    async def send(
        self,
        request: bytes,
        marker: bytes | None = None,
        end_marker: bytes | None = None,
        keep_body: bool = False,
        watch: tuple[bytes, ...] = (),
        stop_at_marker: bool = False,
    ) -> _Exchange:
        """Send `request` and read its whole answer; with `stop_at_marker`, only up to the
        block where `marker` first shows, then the connection is closed (a client that
        drops the stream)."""
        if self.closed or self._transport is None:
            raise HttpError("connection closed")
        self._stop_at_marker = stop_at_marker
        exchange = self._exchange = _Exchange(marker, end_marker, keep_body, watch)
        self._transport.write(request)
        await exchange.done
        return exchange

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


class Client:
    """A simulated client: its connection, opened on first use and again after a failure."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._connection: Connection | None = None

    @classmethod
    def for_url(cls, url: str) -> Client:
        parts = urlsplit(url)
        return cls(parts.hostname or "127.0.0.1", parts.port or 80)

    async def connection(self) -> Connection:
        if self._connection is None or self._connection.closed:
            loop = asyncio.get_running_loop()
            _, self._connection = await loop.create_connection(Connection, self.host, self.port)
        return self._connection

    async def send(self, request: bytes, **options) -> _Exchange:
        connection = await self.connection()
        try:
            return await connection.send(request, **options)
        except BaseException:
            connection.close()  # a half-read answer: the connection cannot be reused
            self._connection = None
            raise

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
