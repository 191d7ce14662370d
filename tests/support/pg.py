"""Throwaway PostgreSQL databases for tests, on the server at 127.0.0.1:5432 (trust auth).

Each test session creates uniquely named databases and drops them at the end, so runs
never collide. `LOOM_TEST_PG_URL` points the tests at another server.
"""

from __future__ import annotations

import os
import uuid

import asyncpg
from sqlalchemy.engine import URL

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
