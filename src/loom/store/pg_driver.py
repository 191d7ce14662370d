"""A turn's hot statements on PostgreSQL, sent straight through the pooled connection's
asyncpg driver rather than through SQLAlchemy's execution layers.

Each turn saves once and, on a conversation, reads its history once. Through an
AsyncConnection each of those statements cost about 150 µs more of Loom's CPU than the
statement itself (greenlet switches, bind and result processing, Row objects, the
isolation-level switch and reset): as much as everything else the save does. A statement
here is still written once in SQLAlchemy Core, so it keeps the schema's names, and
compiled once into PostgreSQL text with `$n` parameters; asyncpg prepares it once per
connection and keeps it. The connection still comes from the engine's pool
(`Database.driver`). It runs outside any transaction, which is all one statement needs:
PostgreSQL applies a statement whole or not at all.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import asyncpg as pg_asyncpg

_DOLLAR = pg_asyncpg.dialect()


def dollar_sql(
    stmt: sa.ClauseElement, column_keys: list[str] | None = None
) -> tuple[str, tuple[str, ...]]:
    """A SQLAlchemy statement as PostgreSQL text with `$n` parameters, and the names of
    the parameters in order (a name used twice is one parameter). Compile once and keep
    the result."""
    compiled = stmt.compile(dialect=_DOLLAR, column_keys=column_keys)
    return compiled.string, tuple(compiled.positiontup or ())
