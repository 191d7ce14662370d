"""The load generator's HTTP client: one keep-alive HTTP/1.1 connection per simulated client,
pre-encoded requests, and httptools' C parser for the answers.

Three processes share the machine's cores during a benchmark (the fake upstream, Loom and
this one), so the client must cost far less than what it measures: httpx spent most of a
core driving 128 streams, which queued requests inside the load generator and bounded the
"direct" figures. Here a request is one write of bytes built once, and an answer is parsed
in C; the body is never parsed as SSE or JSON. Its raw bytes are searched for the first
token's marker as they arrive, until it shows, and once the answer is complete its last
event is found searching backwards from the end, for the end-of-stream marker: a few
microseconds per answer, where searching every block of a 20 kB stream for the end and
failure markers took about 15.
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


def last_event(blocks: list[bytes]) -> bytes:
    """The last server-sent event of a body received as `blocks`: the text after the last
    blank line that is not the body's own end. The bytes are searched backwards from the
    end, so the cost is the size of that event, not of the stream."""
    tail = b""
    end = 0
    for block in reversed(blocks):
        tail = block + tail
        end = len(tail)
        while end and tail[end - 1] in b"\r\n":
            end -= 1
        start = tail.rfind(b"\n\n", 0, end)
        if start >= 0:
            return tail[start + 2 : end]
    return tail[:end]


class _Exchange:
    """What one answer is being read for: its status, body, when the first-token marker
    first came, and what the stream's last event says (for the end and `watch` markers).

    Per received block this keeps a reference to it, copies the head of the body once and,
    until the first token, looks for its marker; the last event is found once, at the end
    of the answer, searching backwards (a terminal event is always the last one)."""

    __slots__ = (
        "body",
        "done",
        "end_marker",
        "ended",
        "first_at",
        "head",
        "last",
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
        watch: tuple[bytes, ...] = (),
    ) -> None:
        self.marker = marker
        self.end_marker = end_marker
        self.first_at: float | None = None
        self.ended = end_marker is None
        self.status = 0
        self.body: list[bytes] = []  # every block, by reference: no copy
        self.head = b""  # the body's first HEAD_BYTES
        self.watch = watch  # markers that may start the last event; those that do go in `seen`
        self.seen: set[bytes] = set()
        self.last = b""  # the last event, once the answer is complete
        self.tail = b""  # the end of the last block, for a first-token marker split in two
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def feed(self, data: bytes) -> None:
        self.body.append(data)
        if len(self.head) < HEAD_BYTES:
            self.head += data[: HEAD_BYTES - len(self.head)]
        marker = self.marker
        if self.first_at is None and marker is not None:
            keep = len(marker) - 1  # bytes of a marker that may start in one block
            if marker in data or marker in self.tail + data[:keep]:
                self.first_at = time.perf_counter()
            elif keep:
                self.tail = (self.tail + data[-keep:])[-keep:]

    def complete(self) -> None:
        """The whole answer is in: read its last event for the end and `watch` markers."""
        if self.end_marker is None and not self.watch:
            return
        last = self.last = last_event(self.body)
        if self.end_marker is not None:
            self.ended = last.startswith(self.end_marker)
        self.seen.update(m for m in self.watch if last.startswith(m))


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
            exchange.complete()
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
        watch: tuple[bytes, ...] = (),
        stop_at_marker: bool = False,
    ) -> _Exchange:
        """Send `request` and read its whole answer. `marker` is looked for anywhere (its
        first arrival is the first token); `end_marker` and each of `watch` must start
        the answer's last server-sent event (`event: response.completed`, `data: [DONE]`).
        With `stop_at_marker`, the answer is read only up to the block where `marker`
        first shows, then the connection is closed (a client that drops the stream)."""
        if self.closed or self._transport is None:
            raise HttpError("connection closed")
        self._stop_at_marker = stop_at_marker
        exchange = self._exchange = _Exchange(marker, end_marker, watch)
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
