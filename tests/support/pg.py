"""Throwaway PostgreSQL databases for tests, on the server at 127.0.0.1:5432 (trust auth).

Each test session creates uniquely named databases and drops them at the end, so runs
never collide. `LOOM_TEST_PG_URL` points the tests at another server.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import asyncpg
import pytest
from sqlalchemy.engine import URL, make_url

PG_URL = os.environ.get("LOOM_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")


class PgDatabases:
    """Creates throwaway databases on the test server and drops them all at the end."""

    def __init__(self, base: URL) -> None:
        self.base = base
        self.names: list[str] = []

    def admin_dsn(self) -> str:
        url = self.base.set(drivername="postgresql", database="postgres")
        return url.render_as_string(hide_password=False)

    async def create(self) -> str:
        name = f"loom_test_{os.getpid()}_{uuid.uuid4().hex[:10]}"
        admin = await asyncpg.connect(self.admin_dsn(), timeout=5)
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        self.names.append(name)
        return self.base.set(database=name).render_as_string(hide_password=False)

    async def drop_all(self) -> None:
        admin = await asyncpg.connect(self.admin_dsn(), timeout=5)
        try:
            for name in self.names:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


def in_thread(coro: Any) -> Any:
    """Run a coroutine to completion on its own loop, away from pytest's event loop."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def pg_unreachable(exc: BaseException) -> None:
    reason = (
        f"PostgreSQL not reachable at {make_url(PG_URL).render_as_string()}"
        f" ({type(exc).__name__}: {exc}); start it to run the postgresql cases"
    )
    if os.environ.get("CI"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@contextlib.contextmanager
def pg_database() -> Iterator[str]:
    """A fresh, uniquely named PostgreSQL database, dropped afterwards."""
    databases = PgDatabases(make_url(PG_URL))
    try:
        url = in_thread(databases.create())
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        pg_unreachable(exc)
    try:
        yield url
    finally:
        in_thread(databases.drop_all())
