"""SQLite connections that can load sqlite-vec, for SQLAlchemy's async aiosqlite dialect.

The standard library's `sqlite3` on many Pythons (this project's machines among them) is
built without `enable_load_extension`, so it cannot load the sqlite-vec extension that
vector search needs. `pysqlite3` (from `pysqlite3-binary`) is the same DB-API module with
a recent SQLite and extension loading. This module hands SQLAlchemy an aiosqlite
connection around a `pysqlite3` connection with sqlite-vec loaded, and a DB-API adapter
whose exception classes are pysqlite3's, so integrity errors still map to
`sqlalchemy.exc.IntegrityError`. `connect` is that connection on its own, with the pragmas
every Loom connection runs with, for the group committer (`group_commit.py`).
"""

from __future__ import annotations

from typing import Any

import aiosqlite
import sqlite_vec
from pysqlite3 import dbapi2 as pysqlite3
from sqlalchemy.dialects.sqlite.aiosqlite import AsyncAdapt_aiosqlite_dbapi

# busy_timeout first: switching to WAL may briefly wait for another process.
PRAGMAS = (
    "busy_timeout=5000",
    "journal_mode=WAL",
    "synchronous=NORMAL",
    "foreign_keys=ON",
)

_ERRORS = (
    "DatabaseError",
    "Error",
    "IntegrityError",
    "NotSupportedError",
    "OperationalError",
    "ProgrammingError",
    "InterfaceError",
)


class PysqliteDbapi(AsyncAdapt_aiosqlite_dbapi):
    """aiosqlite's DB-API adapter, with pysqlite3's exception classes and version."""

    def _init_dbapi_attributes(self) -> None:
        super()._init_dbapi_attributes()
        for name in (*_ERRORS, "sqlite_version", "sqlite_version_info"):
            setattr(self, name, getattr(pysqlite3, name))


def dbapi() -> PysqliteDbapi:
    return PysqliteDbapi(aiosqlite, pysqlite3)


def _open(path: str, uri: bool) -> Any:
    conn = pysqlite3.connect(path, uri=uri, check_same_thread=False)
    conn.enable_load_extension(True)
    sqlite_vec.load(conn)
    conn.enable_load_extension(False)
    return conn


def apply_pragmas(conn: Any) -> None:
    """Put a DB-API connection in autocommit mode (BEGIN is always explicit) and set
    Loom's pragmas on it."""
    conn.isolation_level = None
    cursor = conn.cursor()
    try:
        for pragma in PRAGMAS:
            cursor.execute(f"PRAGMA {pragma}")
    finally:
        cursor.close()


def connect(path: str, uri: bool = False) -> Any:
    """A plain pysqlite3 connection to `path`, configured like every Loom connection."""
    conn = _open(path, uri)
    apply_pragmas(conn)
    return conn


def async_creator(path: str, uri: bool = False):
    """An `async_creator` for `create_async_engine`: an aiosqlite connection to `path`."""

    def connect() -> Any:
        return _open(path, uri)

    async def create() -> aiosqlite.Connection:
        connection = aiosqlite.Connection(connect, 64)
        connection._thread.daemon = True  # as SQLAlchemy does for aiosqlite
        return await connection

    return create
