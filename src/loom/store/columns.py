"""Column types and naming rules shared by the live schema and the frozen migrations.

Both `schema.py` (what the stores query) and `migrations.py` (what builds the database)
need the same JSON encoding, the same auto-increment key type and the same constraint
names; defining them once keeps the two from drifting apart in how they spell a column.
"""

from __future__ import annotations

from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Dialect

# Explicit names, so a later migration can drop or alter a constraint on both backends.
NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Insertion order. SQLite only auto-increments an INTEGER PRIMARY KEY (its rowid);
# PostgreSQL gets a BIGSERIAL.
Seq = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def dump_json(value: Any) -> str:
    """A JSON column's stored text (also what the group committer writes)."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


class JSONText(sa.TypeDecorator[Any]):
    """A JSON value stored as text and returned as plain dicts/lists on both backends.

    Text rather than a native JSON type: PostgreSQL's `json` would re-parse every payload
    on insert and `jsonb` would reorder keys; neither is needed, as Loom never queries
    inside payloads.
    """

    impl = sa.Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return dump_json(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        return orjson.loads(value)
