"""SQLite reads in one thread hop: a read is a plain function of a DB-API connection, run
whole on a thread of its own.

Through SQLAlchemy and aiosqlite, one query is eight hops between the event loop and
aiosqlite's thread (BEGIN, cursor, execute, fetch, close, ROLLBACK...). The reads on a
turn's path (its conversation's history) run here instead: one hop whatever they do. Used
for a few hot reads only; the stores' other reads stay on SQLAlchemy. The reader's own
connection reads in autocommit mode; a function that needs one snapshot for several
statements opens a transaction itself.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from loom.store import sqlite_driver


class SqliteReader:
    def __init__(
        self, path: str, uri: bool, observe: Callable[[float], None] = lambda seconds: None
    ) -> None:
        self._path, self._uri = path, uri
        self._observe = observe  # the seconds of each read, the thread hop included
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="loom-sqlite-read")
        self._conn: Any = None  # opened, used and closed on the executor's thread only

    async def run(self, read: Callable[[Any], Any]) -> Any:
        """`read(connection)`'s result, run on the reader's thread."""
        started = time.perf_counter()
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._executor, self._run, read)
        finally:
            self._observe(time.perf_counter() - started)

    def _run(self, read: Callable[[Any], Any]) -> Any:
        if self._conn is None:
            self._conn = sqlite_driver.connect(self._path, self._uri)
        return read(self._conn)

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self._close_conn)
        self._executor.shutdown(wait=True)

    def _close_conn(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
