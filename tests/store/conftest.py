"""Fixtures that run every store test against SQLite and against PostgreSQL.

PostgreSQL tests get their own uniquely named database, created from the `postgres`
maintenance database and dropped when the session ends, so parallel runs never collide.
Each test also gets a fresh owner, so tests sharing that database never see each other's
rows. Without a reachable server the PostgreSQL cases skip, saying why; with `CI` set they
fail instead.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from loom.store import Database, Stores
from tests.support.pg import PG_URL, PgDatabases

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgresql),
]


@pytest.fixture(scope="session")
async def pg_databases() -> AsyncIterator[PgDatabases]:
    databases = PgDatabases(make_url(PG_URL))
    try:
        probe = await asyncpg.connect(databases.admin_dsn(), timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        reason = (
            f"PostgreSQL not reachable at {make_url(PG_URL).render_as_string()}"
            f" ({type(exc).__name__}: {exc}); start it to run these"
        )
        if os.environ.get("CI"):
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    await probe.close()
    yield databases
    await databases.drop_all()


@pytest.fixture(scope="session")
async def pg_url(pg_databases: PgDatabases) -> str:
    """One migrated database shared by the session's PostgreSQL tests."""
    url = await pg_databases.create()
    db = await Database.connect(url)
    await db.migrate()
    await db.close()
    return url


@pytest.fixture
async def pg_fresh_url(pg_databases: PgDatabases) -> str:
    return await pg_databases.create()


# The per-backend fixtures below are synchronous on purpose: they pull the PostgreSQL
# fixtures in lazily with getfixturevalue, which cannot run inside the event loop.
@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def fresh_url(backend: str, request: pytest.FixtureRequest, tmp_path) -> str:
    """The URL of an empty, never-migrated database."""
    if backend == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'data' / 'loom.db'}"
    return request.getfixturevalue("pg_fresh_url")


@pytest.fixture
def db_url(backend: str, request: pytest.FixtureRequest, tmp_path) -> str:
    """A new SQLite file, or the session's migrated PostgreSQL database."""
    if backend == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'loom.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = await Database.connect(db_url)
    await database.migrate()
    yield database
    await database.close()


@pytest.fixture
def stores(db: Database) -> Stores:
    return Stores.on(db)


@pytest.fixture
def owner() -> str:
    return f"owner-{uuid.uuid4().hex}"


@pytest.fixture
def stranger() -> str:
    return f"stranger-{uuid.uuid4().hex}"
