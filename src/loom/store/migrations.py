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


@migration
def m005_files_and_vector_stores(conn: Connection) -> None:
    md = sa.MetaData(naming_convention=NAMING_CONVENTION)
    sa.Table(
        "files",
        md,
        sa.Column("seq", Seq, primary_key=True),
        sa.Column("id", sa.String, nullable=False, unique=True),
        sa.Column("owner", sa.String, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=True),
        sa.Column("bytes", sa.BigInteger, nullable=False),
        sa.Column("filename", sa.String, nullable=False),
        sa.Column("purpose", sa.String, nullable=False),
        sa.Column("path", sa.String, nullable=False),
        sa.Index(None, "owner", "purpose", "seq"),
    )
    sa.Table(
        "vector_stores",
        md,
        sa.Column("seq", Seq, primary_key=True),
        sa.Column("id", sa.String, nullable=False, unique=True),
        sa.Column("owner", sa.String, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("last_active_at", sa.BigInteger, nullable=False),
        sa.Column("name", sa.String, nullable=True),
        sa.Column("metadata", JSONText, nullable=True),
        sa.Column("expires_after", JSONText, nullable=True),
        sa.Column("expires_at", sa.BigInteger, nullable=True),
        sa.Column("embedding_model", sa.String, nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False, server_default="0"),
        sa.Index(None, "owner", "seq"),
    )
    sa.Table(
        "vector_store_files",
        md,
        sa.Column("seq", Seq, primary_key=True),
        sa.Column("vector_store_id", sa.String, nullable=False),
        sa.Column("file_id", sa.String, nullable=False),
        sa.Column("owner", sa.String, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String, nullable=False),
        sa.Column("last_error", JSONText, nullable=True),
        sa.Column("attributes", JSONText, nullable=True),
        sa.Column("chunking_strategy", JSONText, nullable=False),
        sa.Column("usage_bytes", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("batch_id", sa.String, nullable=True),
        sa.Column("lease_until", sa.Float, nullable=True),
        sa.UniqueConstraint("vector_store_id", "file_id"),
        sa.Index(None, "status", "lease_until"),
        sa.Index(None, "file_id"),
        sa.Index(None, "batch_id"),
    )
    sa.Table(
        "file_batches",
        md,
        sa.Column("id", sa.String, primary_key=True),
        sa.Column("vector_store_id", sa.String, nullable=False),
        sa.Column("owner", sa.String, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("cancelled", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    sa.Table(
        "chunks",
        md,
        sa.Column("id", Seq, primary_key=True),
        sa.Column("vector_store_id", sa.String, nullable=False),
        sa.Column("file_id", sa.String, nullable=False),
        sa.Column("owner", sa.String, nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("embedding", sa.LargeBinary, nullable=True),
        sa.Index(None, "vector_store_id", "file_id"),
    )
    md.create_all(conn)
    if conn.dialect.name == "sqlite":
        # Keyword index; rowid = chunks.id. Vectors get chunk_vec_<dims> tables on demand.
        conn.exec_driver_sql("ALTER TABLE chunks ADD COLUMN tsv TEXT")
        conn.exec_driver_sql(
            "CREATE VIRTUAL TABLE chunk_fts USING fts5(text, content='', contentless_delete=1)"
        )
        conn.exec_driver_sql(
            "CREATE VIRTUAL TABLE chunk_fts_vocab USING fts5vocab(chunk_fts, 'row')"
        )
    else:
        conn.exec_driver_sql(
            "ALTER TABLE chunks ADD COLUMN tsv tsvector"
            " GENERATED ALWAYS AS (to_tsvector('english', text)) STORED"
        )
        conn.exec_driver_sql("CREATE INDEX ix_chunks_fts ON chunks USING gin (tsv)")


@migration
def m006_pg_save_turn(conn: Connection) -> None:
    """PostgreSQL: `loom_save_turn`, a turn's whole save as one statement (see
    `store/responses.py`). Upserts the response, never over another owner's row, then
    appends the conversation's items after bumping its position counter (which row-locks
    the conversation, as `append_items_in` does). Raising undoes everything, so a turn
    never half-lands: SQLSTATE LM409 when the response id is another owner's, LM404 when
    the conversation is not this owner's. Returns the first item's position (NULL without
    a conversation). Nothing on SQLite, whose turns go through the group committer."""
    if conn.dialect.name != "postgresql":
        return
    conn.exec_driver_sql(
        """
        CREATE FUNCTION loom_save_turn(
            p_id text, p_owner text, p_created_at double precision, p_status text,
            p_model text, p_previous_response_id text, p_conversation_id text,
            p_response text, p_input_items text, p_item_ids text[], p_items text[]
        ) RETURNS bigint LANGUAGE plpgsql AS $$
        DECLARE
            n bigint := cardinality(p_item_ids);
            last_position bigint;
        BEGIN
            INSERT INTO responses AS r (id, owner, created_at, status, model,
                previous_response_id, conversation_id, response, input_items)
            VALUES (p_id, p_owner, p_created_at, p_status, p_model,
                p_previous_response_id, p_conversation_id, p_response, p_input_items)
            ON CONFLICT (id) DO UPDATE SET created_at = excluded.created_at,
                status = excluded.status, model = excluded.model,
                previous_response_id = excluded.previous_response_id,
                conversation_id = excluded.conversation_id,
                response = excluded.response, input_items = excluded.input_items
            WHERE r.owner = excluded.owner;
            IF NOT FOUND THEN
                RAISE EXCEPTION 'response id % is taken', p_id USING ERRCODE = 'LM409';
            END IF;
            IF p_conversation_id IS NULL THEN
                RETURN NULL;
            END IF;
            UPDATE conversations SET next_position = next_position + n
            WHERE owner = p_owner AND id = p_conversation_id
            RETURNING next_position INTO last_position;
            IF NOT FOUND THEN
                RAISE EXCEPTION 'conversation % not found', p_conversation_id
                    USING ERRCODE = 'LM404';
            END IF;
            INSERT INTO conversation_items (conversation_id, position, item_id, owner, item)
            SELECT p_conversation_id, last_position - n + t.ord - 1, t.item_id, p_owner, t.item
            FROM unnest(p_item_ids, p_items) WITH ORDINALITY AS t(item_id, item, ord);
            RETURN last_position - n;
        END
        $$
        """
    )


@migration
def m007_conversation_deletions(conn: Connection) -> None:
    """A count of the items deleted from each conversation, so a cached history is checked
    in constant time (history_cache.py)."""
    conn.exec_driver_sql("ALTER TABLE conversations ADD COLUMN deletions BIGINT NOT NULL DEFAULT 0")


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
