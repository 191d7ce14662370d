"""Database: connection setup, SQLite pragmas, write transactions and migrations."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
import sqlalchemy as sa

from loom.store import Database
from loom.store.migrations import MIGRATIONS
from loom.store.retrieval_schema import PG_FULL_TEXT_INDEX, SQLITE_SEARCH_TABLE_PREFIXES
from loom.store.schema import conversations, metadata, schema_migrations
from tests.store.helpers import new_id
from tests.support.pg import PgDatabases

ALL_MIGRATIONS = [fn.__name__ for fn in MIGRATIONS]


async def test_migrate_is_idempotent(fresh_url: str) -> None:
    db = await Database.connect(fresh_url)
    try:
        assert await db.migrate() == ALL_MIGRATIONS
        assert await db.migrate() == []
        async with db.read() as conn:
            names = (await conn.execute(sa.select(schema_migrations.c.name))).scalars().all()
        assert sorted(names) == sorted(ALL_MIGRATIONS)
    finally:
        await db.close()


async def test_concurrent_migrate_applies_each_migration_once(fresh_url: str) -> None:
    first, second = await Database.connect(fresh_url), await Database.connect(fresh_url)
    try:
        applied = await asyncio.gather(first.migrate(), second.migrate())
        # Exactly one process did the work; the other found nothing left to do.
        assert sorted(applied, key=len) == [[], ALL_MIGRATIONS]
        async with first.read() as conn:
            count = (
                await conn.execute(sa.select(sa.func.count()).select_from(schema_migrations))
            ).scalar_one()
        assert count == len(ALL_MIGRATIONS)
    finally:
        await first.close()
        await second.close()


async def test_migrated_database_matches_schema_module(db: Database) -> None:
    """The migrations build exactly the tables, columns and indexes schema.py queries."""

    def describe(sync_conn: sa.Connection) -> dict[str, dict[str, set]]:
        inspector = sa.inspect(sync_conn)
        return {
            table: {
                "columns": {(c["name"], c["nullable"]) for c in inspector.get_columns(table)},
                "indexes": {
                    i["name"]
                    for i in inspector.get_indexes(table)
                    if not i.get("duplicates_constraint") and i["name"] != PG_FULL_TEXT_INDEX
                },
                "unique": {u["name"] for u in inspector.get_unique_constraints(table)},
                "primary_key": set(inspector.get_pk_constraint(table)["constrained_columns"]),
                "foreign_keys": {
                    (tuple(fk["constrained_columns"]), fk["referred_table"])
                    for fk in inspector.get_foreign_keys(table)
                },
            }
            for table in inspector.get_table_names()
            if not table.startswith(SQLITE_SEARCH_TABLE_PREFIXES)
        }

    def expected(table: sa.Table) -> dict[str, set]:
        return {
            "columns": {(c.name, c.nullable) for c in table.columns},
            "indexes": {i.name for i in table.indexes},
            "unique": {c.name for c in table.constraints if isinstance(c, sa.UniqueConstraint)}
            | {f"uq_{table.name}_{c.name}" for c in table.columns if c.unique},
            "primary_key": {c.name for c in table.primary_key.columns},
            "foreign_keys": {
                ((fk.parent.name,), fk.column.table.name) for fk in table.foreign_keys
            },
        }

    async with db.read() as conn:
        found = await conn.run_sync(describe)
    assert found == {table.name: expected(table) for table in metadata.sorted_tables}


async def test_sqlite_connection_pragmas(tmp_path) -> None:
    db = await Database.connect(f"sqlite+aiosqlite:///{tmp_path / 'a' / 'b' / 'loom.db'}")
    try:
        assert db.dialect_name == "sqlite"
        assert (tmp_path / "a" / "b" / "loom.db").exists()
        async with db.read() as conn:

            async def pragma(name: str):
                return (await conn.exec_driver_sql(f"PRAGMA {name}")).scalar_one()

            assert await pragma("journal_mode") == "wal"
            assert await pragma("foreign_keys") == 1
            assert await pragma("busy_timeout") == 5000
            assert await pragma("synchronous") == 1  # NORMAL
    finally:
        await db.close()


async def test_plain_urls_get_the_async_driver(tmp_path) -> None:
    db = await Database.connect(f"sqlite:///{tmp_path / 'loom.db'}")
    try:
        assert db.engine.url.drivername == "sqlite+aiosqlite"
    finally:
        await db.close()


async def test_in_memory_sqlite_is_refused() -> None:
    with pytest.raises(ValueError, match="file-backed"):
        await Database.connect("sqlite+aiosqlite:///:memory:")


async def test_dialect_name_names_the_backend(backend: str, db: Database) -> None:
    assert db.dialect_name == backend


async def test_write_commits_or_rolls_back_as_a_whole(db: Database, owner: str) -> None:
    row = {"id": new_id("conv"), "owner": owner, "created_at": 0.0, "conversation": {}}
    mine = sa.select(conversations.c.id).where(conversations.c.owner == owner)
    with pytest.raises(RuntimeError):
        async with db.write() as conn:
            await conn.execute(sa.insert(conversations).values(row))
            assert (await conn.execute(mine)).scalars().all() == [row["id"]]
            raise RuntimeError("boom")
    async with db.read() as conn:
        assert (await conn.execute(mine)).scalars().all() == []

    async with db.write() as conn:
        await conn.execute(sa.insert(conversations).values(row))
    async with db.read() as conn:
        assert (await conn.execute(mine)).scalars().all() == [row["id"]]


@pytest.mark.postgresql
async def test_a_pooled_connection_the_server_closed_is_replaced(
    pg_url: str, pg_databases: PgDatabases
) -> None:
    """The pool checks a connection without a round trip (no pre-ping): one the server
    ended while it sat in the pool is replaced, and the query on it succeeds."""
    db = await Database.connect(pg_url)
    try:
        async with db.read() as conn:
            raw = (await conn.get_raw_connection()).driver_connection
        closed = asyncio.Event()
        raw.add_termination_listener(lambda _conn: closed.set())
        admin = await asyncpg.connect(pg_databases.admin_dsn(), timeout=5)
        try:
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", raw.get_server_pid())
        finally:
            await admin.close()
        await asyncio.wait_for(closed.wait(), 10)
        async with db.read() as conn:
            assert (await conn.execute(sa.text("SELECT 1"))).scalar_one() == 1
            assert (await conn.get_raw_connection()).driver_connection is not raw
    finally:
        await db.close()
