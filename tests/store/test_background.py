"""The background-work tables on both backends: claims never overlap, leases are renewed
only for live runs, cancel of unclaimed work ends it (with a terminal event), and events
are written in batches."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from loom.api.sse import typed_event_bytes
from loom.engine.event_fold import frame_event
from loom.engine.event_log import EventLogWriter
from loom.engine.settle import end_cancelled_in
from loom.store import DuplicateIdError, Stores
from loom.store.background import JOBS_CHANNEL


def _response(rid: str) -> dict:
    return {"id": rid, "object": "response", "created_at": 1, "status": "queued", "output": []}


async def _queue(
    stores: Stores, owner: str, rid: str, lease_owner: str | None = None, lease: float = 30
) -> None:
    created = {"type": "response.created", "sequence_number": 0, "response": _response(rid)}
    prelude = [(0, typed_event_bytes(created))]
    await stores.background.create(
        owner, _response(rid), [], None, {"model": "m"}, prelude, lease_owner, lease
    )


async def _end_queued(conn, response_id: str) -> None:
    await end_cancelled_in(conn, response_id, typed_event_bytes)


async def test_concurrent_claims_take_each_job_once(stores: Stores, owner: str):
    ids = [f"resp_claim_{stores.db.dialect_name}_{n}" for n in range(12)]
    for rid in ids:
        await _queue(stores, owner, rid)
    first, second = await asyncio.gather(
        stores.background.claim_queued("replica_a", 30, 8),
        stores.background.claim_queued("replica_b", 30, 8),
    )
    got_a = {j["response_id"] for j in first if j["response_id"] in ids}
    got_b = {j["response_id"] for j in second if j["response_id"] in ids}
    assert not got_a & got_b
    assert got_a | got_b == set(ids)


async def test_heartbeat_renews_only_live_runs_and_reports_cancels(stores: Stores, owner: str):
    tag = stores.db.dialect_name
    live, orphan = f"resp_live_{tag}", f"resp_orphan_{tag}"
    # Both leases are already over; the heartbeat renews the one still running here.
    await _queue(stores, owner, live, lease_owner=f"replica_hb_{tag}", lease=-1)
    await _queue(stores, owner, orphan, lease_owner=f"replica_hb_{tag}", lease=-1)
    assert await stores.background.heartbeat(f"replica_hb_{tag}", [live], 30) == []
    job = await stores.background.request_cancel(owner, live, _end_queued)
    assert job is not None and job["state"] == "running"
    assert await stores.background.heartbeat(f"replica_hb_{tag}", [live], 30) == [live]
    lapsed = await stores.background.lapsed_ids(everyone=False)
    assert orphan in lapsed and live not in lapsed


async def test_cancel_of_queued_work_ends_it(stores: Stores, owner: str, stranger: str):
    rid = f"resp_cq_{stores.db.dialect_name}"
    await _queue(stores, owner, rid)
    assert await stores.background.request_cancel(stranger, rid, _end_queued) is None
    await stores.background.request_cancel(owner, rid, _end_queued)
    assert (await stores.background.job(owner, rid))["state"] == "done"
    assert (await stores.responses.get(owner, rid))["response"]["status"] == "cancelled"
    # Its log ends with the cancel's terminal event, right after what was there.
    events = [frame_event(f) for _, f in await stores.background.events_after(rid, -1)]
    assert [(e["type"], e["sequence_number"]) for e in events] == [
        ("response.created", 0),
        ("response.incomplete", 1),
    ]
    assert events[-1]["response"]["status"] == "cancelled"
    claimed = await stores.background.claim_queued("replica_x", 30, 100)
    assert rid not in {j["response_id"] for j in claimed}


async def test_event_writer_batches(stores: Stores, owner: str):
    rid = f"resp_batch_{stores.db.dialect_name}"
    await _queue(stores, owner, rid, lease_owner="replica_w")
    published: list[tuple[int, list[bytes]]] = []
    writer = EventLogWriter(
        stores.background, rid, 0.05, lambda first, frames: published.append((first, frames))
    )
    for seq in range(1, 201):  # a fast stream: 200 events before the writer runs
        writer.add(seq, f"event: e\ndata: {seq}\n\n".encode())
    writer.start()
    deadline = asyncio.get_running_loop().time() + 10
    while writer.writes == 0 and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.01)  # poll with a deadline: the write has no event to await
    assert await writer.take_rest() == []
    assert writer.writes == 1
    assert len(published) == 1 and published[0][0] == 1 and len(published[0][1]) == 200
    rows = await stores.background.events_after(rid, 0)
    assert [seq for seq, _ in rows] == list(range(1, 201))


@pytest.mark.parametrize(
    "backend", [pytest.param("postgresql", marks=pytest.mark.postgresql)], indirect=False
)
async def test_create_is_one_statement_that_announces_only_unclaimed_work(
    stores: Stores, owner: str, db_url: str
):
    """On PostgreSQL the create commits on its own: work nobody claimed is announced on
    `loom_jobs` at its commit, claimed work is not, a taken id is refused, and the commit
    that skipped the wait for the disk leaves the pooled connection's setting alone."""
    assert stores.db.dialect_name == "postgresql"  # LISTEN/NOTIFY, synchronous_commit
    import asyncpg

    listener = await asyncpg.connect(db_url.replace("postgresql+asyncpg://", "postgresql://"))
    heard: asyncio.Queue[str] = asyncio.Queue()
    await listener.add_listener(JOBS_CHANNEL, lambda *args: heard.put_nowait(args[3]))
    try:
        tag = uuid.uuid4().hex[:8]
        await _queue(stores, owner, f"resp_claimed_{tag}", lease_owner="replica_a")
        await _queue(stores, owner, f"resp_queued_{tag}")
        assert await asyncio.wait_for(heard.get(), 10) == f"resp_queued_{tag}"
        assert heard.empty()  # the claimed one was not announced (NOTIFYs come in order)
        with pytest.raises(DuplicateIdError):
            await _queue(stores, owner, f"resp_queued_{tag}")
        job = await stores.background.job(owner, f"resp_claimed_{tag}")
        assert job is not None and job["state"] == "running"
        async with stores.db.engine.connect() as conn:
            setting = (await conn.exec_driver_sql("SHOW synchronous_commit")).scalar()
        assert setting == "on"
    finally:
        await listener.close()
