"""One handle on the database, hiding what differs between SQLite and PostgreSQL.

Stores never build engines or transactions themselves; they ask a `Database` for a read
connection or a write transaction. On SQLite the file runs in WAL mode (readers never block
the writer) and every write transaction goes through one asyncio lock per `Database` and
starts with BEGIN IMMEDIATE, so concurrent requests queue in Python instead of failing with
"database is locked"; busy_timeout covers other processes sharing the file. PostgreSQL
needs neither: its writers take row locks where the stores ask for them.

On SQLite, `committer` also saves turns in groups, one transaction and one thread hop for
the turns that finish together (see group_commit.py), and `reader` runs a turn's hot reads
in one hop (sqlite_reader.py); both are None on PostgreSQL. There `pg_committer` saves the
plain turns that finish together in one statement (pg_group_commit.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from loom.observability.metrics import DB_LATENCY
from loom.store import sqlite_driver
from loom.store.group_commit import GroupCommitter
from loom.store.migrations import apply_pending
from loom.store.pg_group_commit import PgGroupCommit
from loom.store.sqlite_reader import SqliteReader

# Execution option marking a connection whose transaction will write (SQLite only).
_WRITE_OPTION = "loom_write"

_READ_LATENCY = DB_LATENCY.labels("read")
_WRITE_LATENCY = DB_LATENCY.labels("write")

# Connections each process keeps open to PostgreSQL, and how many more it may open briefly.
PG_POOL_SIZE = 20
PG_POOL_OVERFLOW = 10

_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"}


class Database:
    """An async SQLAlchemy engine plus the locking rules of its backend."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.dialect_name: str = engine.dialect.name
        # SQLite allows one writer at a time; queue writers here rather than in the file.
        self._write_lock: asyncio.Lock | None = None
        self.committer: GroupCommitter | None = None
        self.reader: SqliteReader | None = None
        self.pg_committer: PgGroupCommit | None = None
        if self.dialect_name == "postgresql":
            self.pg_committer = PgGroupCommit(lambda: self.driver(write=True))
        if self.dialect_name == "sqlite":
            self._write_lock = asyncio.Lock()
            database = engine.url.database or ""
            uri = database.startswith("file:")
            self.committer = GroupCommitter(database, uri, self._write_lock, _WRITE_LATENCY.observe)
            self.reader = SqliteReader(database, uri, _READ_LATENCY.observe)

    @classmethod
    async def connect(cls, url: str) -> Database:
        """Open `url` (`sqlite+aiosqlite:///path` or `postgresql+asyncpg://...`).

        Plain `sqlite:///` and `postgresql://` URLs get the async driver. A SQLite file's
        parent directory is created. Fails here, not on first use, if the database cannot
        be reached.
        """
        sa_url = _async_url(make_url(url))
        if sa_url.get_backend_name() == "sqlite":
            engine = _sqlite_engine(sa_url)
        else:
            engine = create_async_engine(
                sa_url,
                # SQLAlchemy's default keeps 5 connections and closes the other 10 each time
                # they are returned: under load every turn's save opened a new connection
                # (TLS attempt, authentication, start-up). Keep enough for a busy process;
                # two workers still stay well under PostgreSQL's default of 100.
                pool_size=PG_POOL_SIZE,
                max_overflow=PG_POOL_OVERFLOW,
            )
            event.listen(engine.sync_engine.pool, "checkout", _drop_closed)
        try:
            async with engine.connect() as conn:
                await conn.exec_driver_sql("SELECT 1")
        except BaseException:
            await engine.dispose()
            raise
        return cls(engine)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A connection for queries; whatever it did is rolled back when the block ends.
        (A hot one-statement read on PostgreSQL goes through `driver` instead.)"""
        started = time.perf_counter()
        try:
            async with self.engine.connect() as conn:
                yield conn
        finally:
            _READ_LATENCY.observe(time.perf_counter() - started)

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A transaction that commits when the block ends, or rolls back if it raises.

        On SQLite this waits for the single writer slot first. Do not nest `write()`
        blocks: the lock is not re-entrant.
        """
        lock: AbstractAsyncContextManager[Any] = self._write_lock or nullcontext()
        started = time.perf_counter()  # includes the wait for SQLite's writer slot
        try:
            async with lock, self.engine.connect() as conn:
                if self._write_lock is not None:
                    await conn.execution_options(**{_WRITE_OPTION: True})
                async with conn.begin():
                    yield conn
        finally:
            _WRITE_LATENCY.observe(time.perf_counter() - started)

    @asynccontextmanager
    async def driver(self, write: bool) -> AsyncIterator[Any]:
        """A pooled PostgreSQL connection's own asyncpg connection, outside any
        transaction, for one hot statement sent as it is (see pg_driver.py): one round
        trip. Timed as a write or a read, like `write()` and `read()`."""
        assert self._write_lock is None, "PostgreSQL only"
        observe = _WRITE_LATENCY.observe if write else _READ_LATENCY.observe
        started = time.perf_counter()
        try:
            async with self.engine.connect() as conn:
                yield (await conn.get_raw_connection()).driver_connection
        finally:
            observe(time.perf_counter() - started)

    async def ping(self, timeout: float = 2.0) -> bool:
        """Whether the database answers a trivial query within `timeout` seconds."""
        try:
            async with asyncio.timeout(timeout), self.engine.connect() as conn:
                await conn.exec_driver_sql("SELECT 1")
        except Exception:
            return False
        return True

    async def migrate(self) -> list[str]:
        """Apply the migrations this database has not seen; return their names."""
        async with self.write() as conn:
            return await apply_pending(conn)

    async def close(self) -> None:
        if self.committer is not None:
            await self.committer.close()
        if self.reader is not None:
            await self.reader.close()
        if self.pg_committer is not None:
            await self.pg_committer.close()
        await self.engine.dispose()


def _drop_closed(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
    """A pooled PostgreSQL connection that the server closed (a restart, an idle timeout,
    pg_terminate_backend) is replaced at checkout. asyncpg notices the closed socket by
    itself, so this costs no round trip, where SQLAlchemy's `pool_pre_ping` sends three
    (BEGIN, a ping, ROLLBACK) on every checkout: a conversation turn checks out twice."""
    if dbapi_conn.driver_connection.is_closed():
        raise DisconnectionError("the server closed this connection")


def _async_url(url: URL) -> URL:
    backend = url.get_backend_name()
    if url.drivername == backend and backend in _DRIVERS:
        return url.set(drivername=_DRIVERS[backend])
    return url


def _sqlite_engine(url: URL) -> AsyncEngine:
    database = url.database or ""
    if database in ("", ":memory:") or "mode=memory" in str(url):
        # One in-memory connection shared by concurrent tasks would mix their transactions.
        raise ValueError("Loom needs a file-backed SQLite database, not an in-memory one")
    if not database.startswith("file:"):
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    # The Connection ends its own transaction; a second rollback on return is a wasted hop.
    # Connections come from pysqlite3 with sqlite-vec loaded (see sqlite_driver.py).
    engine = create_async_engine(
        url,
        pool_reset_on_return=None,
        module=sqlite_driver.dbapi(),
        async_creator=sqlite_driver.async_creator(database, uri=database.startswith("file:")),
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take BEGIN away from the sqlite3 module, which would skip it for SELECTs and
        # DDL; `_on_begin` emits it instead.
        sqlite_driver.apply_pragmas(dbapi_conn)

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # A writer takes the file's write lock up front, so it never has to upgrade a
        # read snapshot later (which can fail at once, whatever busy_timeout says).
        write = conn.get_execution_options().get(_WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine
