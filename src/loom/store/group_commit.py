"""SQLite group commit: the turns that finish together are saved in one transaction, with
one thread hop for all of them.

Through SQLAlchemy and aiosqlite, every DB-API call is a hop from the event loop to
aiosqlite's thread and back (a cursor, each execute, each fetch, BEGIN, COMMIT): a turn's
save took 8 hops, 15 with its conversation items, and one commit each. Under load those
hops, not SQLite, were the cost. Here a save is a plain function of a DB-API connection,
queued with `run`. One committer takes every save waiting and runs them all in one call on
its own thread and connection: BEGIN IMMEDIATE, each save inside its own SAVEPOINT (a save
that raises is rolled back alone and its caller gets the error; the others still commit),
then COMMIT. Saves that arrive while a batch commits form the next batch.

The committer holds the `Database`'s writer lock while its batch runs, so it never competes
with the process's other writers for the file; other processes are waited for by
busy_timeout, as everywhere else.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite

from loom.store import sqlite_driver

Job = Callable[[Any], Any]
_QMARK = sqlite.dialect(paramstyle="qmark")


def qmark_sql(
    stmt: sa.ClauseElement, column_keys: list[str] | None = None
) -> tuple[str, tuple[str, ...]]:
    """A SQLAlchemy statement as SQLite text with `?` parameters, and the names of the
    parameters in order: how a save states its SQL once, in the schema's own terms, and
    runs it on a plain DB-API connection. Compile once and keep the result."""
    compiled = stmt.compile(dialect=_QMARK, column_keys=column_keys)
    return compiled.string, tuple(compiled.positiontup or ())


class GroupCommitter:
    def __init__(
        self,
        path: str,
        uri: bool,
        write_lock: asyncio.Lock,
        observe: Callable[[float], None] = lambda seconds: None,
    ) -> None:
        self._path, self._uri = path, uri
        self._lock = write_lock
        self._observe = observe  # the seconds of each group transaction, lock wait included
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="loom-sqlite-commit")
        self._conn: Any = None  # opened, used and closed on the executor's thread only
        self._pending: list[tuple[Job, asyncio.Future]] = []
        self._committer: asyncio.Task | None = None
        # What the benchmarks and tests read: saves run, transactions committed, hops made.
        self.saves = 0
        self.batches = 0

    async def run(self, job: Job) -> Any:
        """Run `job(connection)` in the next group transaction; its result, or what it
        raised (then nothing it wrote is kept). Raises also if the commit itself fails."""
        future = asyncio.get_running_loop().create_future()
        self._pending.append((job, future))
        if self._committer is None:
            self._committer = asyncio.create_task(self._commit_pending())
        return await future

    async def _commit_pending(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                started = time.perf_counter()
                async with self._lock:
                    try:
                        outcomes = await loop.run_in_executor(
                            self._executor, self._commit, [job for job, _ in batch]
                        )
                    except BaseException as exc:  # BEGIN or COMMIT failed: nothing is kept
                        outcomes = [(False, exc)] * len(batch)
                self._observe(time.perf_counter() - started)
                self.batches += 1
                self.saves += len(batch)
                for (_, future), (ok, value) in zip(batch, outcomes, strict=True):
                    if future.done():  # its caller was cancelled; the save stands
                        continue
                    if ok:
                        future.set_result(value)
                    else:
                        future.set_exception(value)
        finally:
            self._committer = None

    def _commit(self, jobs: list[Job]) -> list[tuple[bool, Any]]:
        """One transaction for `jobs`, on the committer's thread."""
        if self._conn is None:
            self._conn = sqlite_driver.connect(self._path, self._uri)
        conn = self._conn
        outcomes: list[tuple[bool, Any]] = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            for job in jobs:
                conn.execute("SAVEPOINT save")
                try:
                    outcomes.append((True, job(conn)))
                except Exception as exc:
                    conn.execute("ROLLBACK TO save")
                    outcomes.append((False, exc))
                conn.execute("RELEASE save")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return outcomes

    async def close(self) -> None:
        """Finish the saves queued, then close the connection and the thread."""
        if self._committer is not None:
            await asyncio.gather(self._committer, return_exceptions=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._close_conn)
        self._executor.shutdown(wait=True)

    def _close_conn(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
