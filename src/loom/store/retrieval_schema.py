"""Tables behind files, vector stores and their search index.

`files` are uploads; `vector_stores` group files for search; `vector_store_files` is the
attachment of a file to a store, which carries the ingestion state (`status`,
`last_error`, the lease a worker holds on it) and the file's search `attributes`;
`file_batches` group attachments made together; `chunks` hold the text pieces that
search ranks, with their embedding.

Where vectors and keywords are indexed differs per backend, beside these tables:
- SQLite: an FTS5 table `chunk_fts` (rowid = chunk id) and one sqlite-vec `vec0` table per
  embedding size, `chunk_vec_<dims>`, partitioned by vector store (see rag_sqlite.py).
- PostgreSQL: `chunks.embedding` holds float32 bytes (pgvector is not assumed), and the
  generated column `chunks.tsv` (`to_tsvector('english', text)`), GIN-indexed, serves
  full-text search.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import TSVECTOR

from loom.store.columns import JSONText, Seq
from loom.store.schema import metadata

# Objects a backend keeps beside the tables above; schema comparisons skip them.
SQLITE_SEARCH_TABLE_PREFIXES = ("chunk_fts", "chunk_vec_")
PG_FULL_TEXT_INDEX = "ix_chunks_fts"

files = sa.Table(
    "files",
    metadata,
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

vector_stores = sa.Table(
    "vector_stores",
    metadata,
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
    # Bumped whenever the store's chunks change, so cached vectors know they are stale.
    sa.Column("version", sa.BigInteger, nullable=False, server_default="0"),
    sa.Index(None, "owner", "seq"),
)

vector_store_files = sa.Table(
    "vector_store_files",
    metadata,
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
    # Until when an ingestion worker holds this row; NULL when no worker does.
    sa.Column("lease_until", sa.Float, nullable=True),
    sa.UniqueConstraint("vector_store_id", "file_id"),
    sa.Index(None, "status", "lease_until"),
    sa.Index(None, "file_id"),
    sa.Index(None, "batch_id"),
)

file_batches = sa.Table(
    "file_batches",
    metadata,
    sa.Column("id", sa.String, primary_key=True),
    sa.Column("vector_store_id", sa.String, nullable=False),
    sa.Column("owner", sa.String, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("cancelled", sa.Boolean, nullable=False, server_default=sa.false()),
)

chunks = sa.Table(
    "chunks",
    metadata,
    sa.Column("id", Seq, primary_key=True),
    sa.Column("vector_store_id", sa.String, nullable=False),
    sa.Column("file_id", sa.String, nullable=False),
    sa.Column("owner", sa.String, nullable=False),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    # float32 bytes; on SQLite also in chunk_vec_<dims>, for vec0's nearest-neighbour scan.
    sa.Column("embedding", sa.LargeBinary, nullable=True),
    # PostgreSQL: GENERATED ALWAYS AS (to_tsvector('english', text)), GIN-indexed.
    # SQLite: always NULL (its keyword index is chunk_fts).
    sa.Column("tsv", TSVECTOR().with_variant(sa.Text(), "sqlite"), nullable=True),
    sa.Index(None, "vector_store_id", "file_id"),
)
