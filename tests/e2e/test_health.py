"""`/v1/health` says whether the database answers: 503 once it is gone."""

from __future__ import annotations

import asyncpg
import httpx
from sqlalchemy.engine import make_url

from tests.conftest import run_loom
from tests.support.pg import in_thread, pg_database


async def _drop(url: str) -> None:
    target = make_url(url)
    admin_dsn = target.set(drivername="postgresql", database="postgres").render_as_string(
        hide_password=False
    )
    admin = await asyncpg.connect(admin_dsn, timeout=5)
    try:
        await admin.execute(f'DROP DATABASE "{target.database}" WITH (FORCE)')
    finally:
        await admin.close()


def test_health_is_503_when_the_database_is_gone(loom_env):
    with pg_database() as url, run_loom({**loom_env, "LOOM_DB_URL": url}) as loom:
        ok = httpx.get(f"{loom.url}/v1/health", timeout=10)
        assert (ok.status_code, ok.json()) == (200, {"status": "OK", "database": "ok"})
        in_thread(_drop(url))  # every connection of Loom's pool is cut, and the database gone
        down = httpx.get(f"{loom.url}/v1/health", timeout=10)
        assert down.status_code == 503
        assert down.json() == {"status": "unavailable", "database": "unreachable"}
