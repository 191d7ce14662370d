"""The ordered, named schema migrations, and the runner that applies the missing ones.

Each migration is a plain function over a synchronous SQLAlchemy connection, registered in
order with `@migration`; its function name is its version key, recorded in
`schema_migrations` once it ran, so never rename or reorder one: append a new one instead.
A migration spells out the tables as they were at that version (it does not import
`schema.py`, which describes the latest shape), so a fresh database and an upgraded one end
up the same. The runner works inside one transaction: on PostgreSQL it first takes an
advisory lock, so several processes starting at once apply each migration exactly once;
on SQLite the caller's write transaction (BEGIN IMMEDIATE) does the same.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from loom.store.columns import NAMING_CONVENTION, JSONText, Seq
from loom.store.schema import schema_migrations

Migration = Callable[[Connection], None]

MIGRATIONS: list[Migration] = []

# An arbitrary constant naming Loom's migration lock among PostgreSQL advisory locks.
_PG_LOCK_KEY = 0x4C6F6F6D_4D696772  # "LoomMigr"


def migration(fn: Migration) -> Migration:
    MIGRATIONS.append(fn)
    return fn


@migration
def m001_initial(conn: Connection) -> None:
    md = sa.MetaData(naming_convention=NAMING_CONVENTION)
    sa.Table(
        "chat_completions",
        md,
        sa.Column("seq", Seq, primary_key=True),
        sa.Column("id", sa.String, nullable=False, unique=True),
        sa.Column("owner", sa.String, nullable=False),
        sa.Column("created", sa.Float, nullable=False),
        sa.Column("model", sa.String, nullable=False),
        sa.Column("completion", JSONText, nullable=False),
        sa.Column("input_messages", JSONText, nullable=False),
        sa.Column("metadata", JSONText, nullable=True),
        sa.Index(None, "owner", "created", "seq"),
    )
    sa.Table(
        "chat_completion_metadata",
        md,
        sa.Column(
            "completion_id",
            sa.String,
            sa.ForeignKey("chat_completions.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("key", sa.String, primary_key=True),
        sa.Column("owner", sa.String, nullable=False),
        sa.Column("value", sa.String, nullable=False),
        sa.Index(None, "owner", "key", "value"),
    )
    sa.Table(
        "responses",
        md,
        sa.Column("seq", Seq, primary_key=True),
        sa.Column("id", sa.String, nullable=False, unique=True),
        sa.Column("owner", sa.String, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("status", sa.String, nullable=True),
        sa.Column("model", sa.String, nullable=True),
        sa.Column("previous_response_id", sa.String, nullable=True),
        sa.Column("conversation_id", sa.String, nullable=True),
        sa.Column("response", JSONText, nullable=False),
        sa.Column("input_items", JSONText, nullable=False),
        sa.Index(None, "owner", "created_at", "seq"),
    )
    sa.Table(
        "conversations",
        md,
        sa.Column("id", sa.String, primary_key=True),
        sa.Column("owner", sa.String, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("next_position", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("conversation", JSONText, nullable=False),
    )
    sa.Table(
        "conversation_items",
        md,
        sa.Column(
            "conversation_id",
            sa.String,
            sa.ForeignKey("conversations.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("position", sa.BigInteger, primary_key=True),
        sa.Column("item_id", sa.String, nullable=False),
        sa.Column("owner", sa.String, nullable=False),
        sa.Column("item", JSONText, nullable=False),
        sa.UniqueConstraint("conversation_id", "item_id"),
    )
    md.create_all(conn)


@migration
def m002_api_keys(conn: Connection) -> None:
    md = sa.MetaData(naming_convention=NAMING_CONVENTION)
    sa.Table(
        "api_keys",
        md,
        sa.Column("seq", Seq, primary_key=True),
        sa.Column("id", sa.String, nullable=False, unique=True),
        sa.Column("digest", sa.String(64), nullable=False, unique=True),
        sa.Column("owner", sa.String, nullable=False),
        sa.Column("name", sa.String, nullable=True),
        sa.Column("redacted_value", sa.String, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("revoked_at", sa.Float, nullable=True),
    )
    md.create_all(conn)


@migration
def m003_prompts(conn: Connection) -> None:
    md = sa.MetaData(naming_convention=NAMING_CONVENTION)
    sa.Table(
        "prompts",
        md,
        sa.Column("id", sa.String, primary_key=True),
        sa.Column("owner", sa.String, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("latest_version", sa.Integer, nullable=False),
        sa.Column("default_version", sa.Integer, nullable=False),
        sa.Index(None, "owner", "created_at"),
    )
    sa.Table(
        "prompt_versions",
        md,
        sa.Column(
            "prompt_id",
            sa.String,
            sa.ForeignKey("prompts.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("owner", sa.String, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("prompt", sa.Text, nullable=False),
        sa.Column("variables", JSONText, nullable=False),
    )
    md.create_all(conn)


@migration
def m004_background(conn: Connection) -> None:
    md = sa.MetaData(naming_convention=NAMING_CONVENTION)
    sa.Table(
        "background_jobs",
        md,
        sa.Column("response_id", sa.String, primary_key=True),
        sa.Column("owner", sa.String, nullable=False),
        sa.Column("state", sa.String, nullable=False),
        sa.Column("request", JSONText, nullable=False),
        sa.Column("lease_owner", sa.String, nullable=True),
        sa.Column("lease_expires_at", sa.Float, nullable=True),
        sa.Column("cancel_requested", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Index(None, "state", "lease_expires_at"),
    )
    sa.Table(
        "response_events",
        md,
        sa.Column("response_id", sa.String, primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("frame", sa.LargeBinary, nullable=False),
    )
    md.create_all(conn)


async def apply_pending(conn: AsyncConnection) -> list[str]:
    """Apply, in order, every migration not yet recorded; return the names applied.

    `conn` must be inside a write transaction; everything commits or rolls back with it.
    """
    if conn.dialect.name == "postgresql":
        # Held until the transaction ends; a second process waits here, then sees the
        # migrations the first one recorded and has nothing left to do.
        await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_LOCK_KEY)))
    await conn.run_sync(lambda sync: schema_migrations.create(sync, checkfirst=True))
    done = set((await conn.execute(sa.select(schema_migrations.c.name))).scalars())
    applied: list[str] = []
    for fn in MIGRATIONS:
        name = fn.__name__
        if name in done:
            continue
        await conn.run_sync(fn)
        await conn.execute(sa.insert(schema_migrations).values(name=name, applied_at=time.time()))
        applied.append(name)
    return applied
