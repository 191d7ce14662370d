"""The current shape of Loom's tables, as the SQLAlchemy Core objects the stores query.

The database itself is built by the ordered migrations in `migrations.py`; this module
describes the result, and a test checks that a migrated database matches it. Every table
has an `owner` column: stores filter on it so one principal never sees another's objects.
"""

from __future__ import annotations

import sqlalchemy as sa

from loom.store.columns import NAMING_CONVENTION, JSONText, Seq

metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)

# Which migrations have run. Created by the migration runner itself, before any migration.
schema_migrations = sa.Table(
    "schema_migrations",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("applied_at", sa.Float, nullable=False),
)

chat_completions = sa.Table(
    "chat_completions",
    metadata,
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

# One row per metadata pair, so `list(metadata=...)` filters in SQL on both backends.
chat_completion_metadata = sa.Table(
    "chat_completion_metadata",
    metadata,
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

responses = sa.Table(
    "responses",
    metadata,
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
# What a save of a response writes, in this order (every column but `seq`): the id and
# the owner, then what an upsert may replace.
RESPONSE_COLUMNS = (
    "id",
    "owner",
    "created_at",
    "status",
    "model",
    "previous_response_id",
    "conversation_id",
    "response",
    "input_items",
)

conversations = sa.Table(
    "conversations",
    metadata,
    sa.Column("id", sa.String, primary_key=True),
    sa.Column("owner", sa.String, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    # The position the next appended item gets; bumping it also locks the row.
    sa.Column("next_position", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("conversation", JSONText, nullable=False),
    # How many items were ever deleted from it: what tells a history cache
    # (history_cache.py) that the history it holds shrank.
    sa.Column("deletions", sa.BigInteger, nullable=False, server_default="0"),
)

# Primary key (conversation_id, position) is the index that pages through a conversation.
conversation_items = sa.Table(
    "conversation_items",
    metadata,
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

# API keys made at run time (admin API, `loom keys`). Only the key's sha256 is kept, with a
# short redacted hint to tell keys apart; `owner` is the principal the key speaks for.
api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("seq", Seq, primary_key=True),
    sa.Column("id", sa.String, nullable=False, unique=True),
    sa.Column("digest", sa.String(64), nullable=False, unique=True),
    sa.Column("owner", sa.String, nullable=False),
    sa.Column("name", sa.String, nullable=True),
    sa.Column("redacted_value", sa.String, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("revoked_at", sa.Float, nullable=True),
)

# Prompt templates (`/v1/prompts`): one row per prompt, one per saved version of it.
prompts = sa.Table(
    "prompts",
    metadata,
    sa.Column("id", sa.String, primary_key=True),
    sa.Column("owner", sa.String, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    # The newest version: an update must name it, so two concurrent updates cannot both win.
    sa.Column("latest_version", sa.Integer, nullable=False),
    sa.Column("default_version", sa.Integer, nullable=False),
    sa.Index(None, "owner", "created_at"),
)

prompt_versions = sa.Table(
    "prompt_versions",
    metadata,
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

# A background response's work item: who runs it (a lease renewed by heartbeat), whether a
# cancel was asked for, and the request to run again if it is given back to the queue.
background_jobs = sa.Table(
    "background_jobs",
    metadata,
    sa.Column("response_id", sa.String, primary_key=True),
    sa.Column("owner", sa.String, nullable=False),
    sa.Column("state", sa.String, nullable=False),  # queued | running | done
    sa.Column("request", JSONText, nullable=False),
    sa.Column("lease_owner", sa.String, nullable=True),
    sa.Column("lease_expires_at", sa.Float, nullable=True),
    sa.Column("cancel_requested", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Index(None, "state", "lease_expires_at"),
)

# The stream of a background response, as the SSE frames that went out, so any replica
# can replay it after `starting_after` and follow it live.
response_events = sa.Table(
    "response_events",
    metadata,
    sa.Column("response_id", sa.String, primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("frame", sa.LargeBinary, nullable=False),
)

# The retrieval tables join the same metadata (imported last: it needs `metadata`).
from loom.store import retrieval_schema  # noqa: E402, F401
