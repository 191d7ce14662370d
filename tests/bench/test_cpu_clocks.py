"""`bench/cpu_clocks.py` tells whose a connection or a PostgreSQL backend is: the workers
phase's per-worker and per-part figures rest on it."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from bench.cpu_clocks import Clocks, connections_by_process, postgres_database
from tests.support.pg import PG_URL, pg_unreachable


async def test_connections_are_counted_on_the_accepting_side():
    accepted: list[asyncio.StreamWriter] = []
    all_in = asyncio.Event()

    async def accept(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)
        if len(accepted) == 5:
            all_in.set()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    clients = [await asyncio.open_connection("127.0.0.1", port) for _ in range(5)]
    try:
        await asyncio.wait_for(all_in.wait(), 10)
        # This process holds both ends; only the 5 accepted ones have `port` as their own.
        assert connections_by_process(port, [os.getpid()]) == {os.getpid(): 5}
    finally:
        for _, writer in clients:
            writer.close()
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()


@pytest.mark.postgresql
async def test_a_backend_is_known_by_its_database():
    url = make_url(PG_URL).set(drivername="postgresql")
    try:
        conn = await asyncpg.connect(url.render_as_string(hide_password=False), timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        pg_unreachable(exc)
    try:
        backend = await conn.fetchval("SELECT pg_backend_pid()")
        assert postgres_database(backend) == url.database
        postmaster = int(Path(f"/proc/{backend}/stat").read_text().rsplit(")", 1)[1].split()[1])
        assert postgres_database(postmaster) is None  # the server's own process
        # A backend counts for its own database's bench, not for another's.
        await conn.fetchval("SELECT count(*) FROM generate_series(1, 3000000)")
        fields = Path(f"/proc/{backend}/stat").read_text().rsplit(")", 1)[1].split()
        used = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        assert used > 0
        other = Clocks.read(loom_pid=-1, upstream_pid=-1, database=f"not_{url.database}")
        ours = Clocks.read(loom_pid=-1, upstream_pid=-1, database=url.database)
        assert ours.postgres - other.postgres >= used - 1e-6  # the counters only grow
    finally:
        await conn.close()
