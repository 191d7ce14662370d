"""PostgreSQL group commit for plain turns: the saves that arrive while one is on its way
go together in the next statement, one multi-row upsert.

A turn saved without a conversation is one upsert (responses.py). Under load each upsert
still cost PostgreSQL a statement, a transaction and a WAL flush of its own, and Loom a
pool checkout and a round trip: with `--workers 2`, a sixth of the CPU a streamed response
costs outside Loom. Here a process has at most one such statement on its way; the saves
that arrive meanwhile wait for it, then go together: `INSERT ... SELECT FROM unnest(...)
ON CONFLICT (id) DO UPDATE ... WHERE the owner is the same ... RETURNING id`. A row that
comes back was written; one that does not is another owner's id, which is its caller's
DuplicateIdError alone. An id twice in one group waits for the next statement, since
PostgreSQL updates a row once per statement. If the statement fails, each save of the
group is tried alone, so an error stays with the save that caused it. Without load a
group is a single save, and the cost over a plain upsert is one task hop.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

import sqlalchemy as sa

from loom.store.schema import RESPONSE_COLUMNS
from loom.store.schema import responses as resp_t

Row = Sequence[str | None]  # one value per column of COLUMNS, each as text
Driver = Callable[[], AbstractAsyncContextManager[Any]]  # an asyncpg connection

COLUMNS = RESPONSE_COLUMNS
_UPDATED = COLUMNS[2:]  # never the id or the owner
_FLOATS = frozenset(name for name in COLUMNS if isinstance(resp_t.c[name].type, sa.Float))


def _selected(name: str) -> str:
    """Every column travels as text, since asyncpg asks the server about a float8[]
    parameter once per connection (a round trip): a float is cast back here. Python
    writes a float's shortest exact repr, which PostgreSQL reads back to the same value."""
    return f"u.{name}::float8" if name in _FLOATS else f"u.{name}"


@functools.cache
def group_upsert_sql() -> str:
    """The statement, from the schema's own names; `$n` is the array of column n."""
    table = resp_t.name
    arrays = ", ".join(f"${n}::text[]" for n in range(1, len(COLUMNS) + 1))
    updates = ", ".join(f"{name} = excluded.{name}" for name in _UPDATED)
    return (
        f"INSERT INTO {table} ({', '.join(COLUMNS)})"
        f" SELECT {', '.join(_selected(name) for name in COLUMNS)}"
        f" FROM unnest({arrays}) AS u({', '.join(COLUMNS)})"
        f" ON CONFLICT (id) DO UPDATE SET {updates}"
        f" WHERE {table}.owner = excluded.owner RETURNING id"
    )


class PgGroupCommit:
    def __init__(self, driver: Driver) -> None:
        self._driver = driver
        self._pending: list[tuple[Row, asyncio.Future[bool]]] = []
        self._flusher: asyncio.Task | None = None
        self.statements = 0  # what the tests read: statements sent, rows they carried
        self.rows = 0

    async def upsert(self, values: dict[str, Any]) -> bool:
        """Save a response row (its JSON columns as text already) with the next group;
        whether it was written (False: the id is another owner's). Raises what saving it
        alone raised."""
        row = [repr(values[name]) if name in _FLOATS else values[name] for name in COLUMNS]
        future = asyncio.get_running_loop().create_future()
        self._pending.append((row, future))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush())
        return await future

    async def close(self) -> None:
        """Wait for the saves already handed in."""
        if self._flusher is not None:
            await asyncio.shield(self._flusher)

    async def _flush(self) -> None:
        try:
            while self._pending:
                group: list[tuple[Row, asyncio.Future[bool]]] = []
                later: list[tuple[Row, asyncio.Future[bool]]] = []
                ids: set[str] = set()
                for entry in self._pending:
                    (later if entry[0][0] in ids else group).append(entry)
                    ids.add(entry[0][0])
                self._pending = later
                await self._save(group)
        finally:
            self._flusher = None
            for _, future in self._pending:  # only if this task itself was cancelled
                future.cancel()

    async def _save(self, group: list[tuple[Row, asyncio.Future[bool]]]) -> None:
        columns = [list(values) for values in zip(*(row for row, _ in group), strict=True)]
        try:
            async with self._driver() as pg:
                written = {record[0] for record in await pg.fetch(group_upsert_sql(), *columns)}
        except Exception as exc:
            if len(group) > 1:  # find whose row it was: each alone
                for entry in group:
                    await self._save([entry])
                return
            _settle(group[0][1], exc)
            return
        except BaseException:
            for _, future in group:
                future.cancel()
            raise
        self.statements += 1
        self.rows += len(group)
        for row, future in group:
            _settle(future, row[0] in written)


def _settle(future: asyncio.Future[bool], outcome: bool | Exception) -> None:
    if future.done():  # its caller was cancelled; the save stands
        return
    if isinstance(outcome, Exception):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
