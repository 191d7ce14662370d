"""Concurrent writers: turns land as contiguous blocks, and SQLite never reports a lock."""

from __future__ import annotations

import asyncio

from loom.store import Database, Stores
from tests.store.helpers import conversation, message_item, response


def block(label: str, size: int = 20) -> list[dict]:
    return [{**message_item(f"{label}:{i}"), "block": label} for i in range(size)]


def assert_contiguous(items: list[dict], blocks: list[list[dict]]) -> None:
    """`items` is exactly the blocks, each whole and in its own order, in some order."""
    remaining = {b[0]["block"]: b for b in blocks}
    index = 0
    while index < len(items):
        label = items[index]["block"]
        expected = remaining.pop(label)
        assert items[index : index + len(expected)] == expected, f"block {label} interleaved"
        index += len(expected)
    assert not remaining, f"blocks missing: {sorted(remaining)}"


async def test_concurrent_appends_land_as_contiguous_blocks(stores: Stores, owner: str) -> None:
    conv = conversation()
    await stores.conversations.create(owner, conv, [])
    written: list[list[dict]] = []
    for round_ in range(6):
        a, b = block(f"a{round_}"), block(f"b{round_}")
        results = await asyncio.gather(
            stores.conversations.append_items(owner, conv["id"], a),
            # The same step inside a whole turn's transaction.
            stores.responses.save_turn(owner, response(), [], conv["id"], b),
        )
        assert results[0] is True
        written += [a, b]
    items = await stores.conversations.all_items(owner, conv["id"])
    assert items is not None and len(items) == 6 * 2 * 20
    assert_contiguous(items, written)


async def test_fifty_concurrent_turns_all_succeed(stores: Stores, owner: str) -> None:
    conv = conversation()
    await stores.conversations.create(owner, conv, [])
    turns = [(response(created_at=1_700_000_000 + i), block(f"t{i}", 2)) for i in range(50)]

    async def reader() -> None:
        for _ in range(10):
            await stores.responses.list(owner, limit=5)
            await stores.conversations.list_items(owner, conv["id"], limit=5, order="desc")

    await asyncio.gather(
        *(
            stores.responses.save_turn(owner, made, items[:1], conv["id"], items)
            for made, items in turns
        ),
        *(reader() for _ in range(5)),
    )

    rows, has_more = await stores.responses.list(owner, limit=100)
    assert {r["id"] for r in rows} == {made["id"] for made, _ in turns} and not has_more
    items = await stores.conversations.all_items(owner, conv["id"])
    assert items is not None
    assert_contiguous(items, [b for _, b in turns])


async def test_sqlite_two_handles_on_one_file_never_lock(tmp_path, owner: str) -> None:
    """Like two Loom processes sharing a SQLite file: each has its own writer lock, and
    BEGIN IMMEDIATE plus busy_timeout make the other one wait instead of failing."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"
    first, second = await Database.connect(url), await Database.connect(url)
    try:
        await first.migrate()
        a, b = Stores.on(first), Stores.on(second)
        conv = conversation()
        await a.conversations.create(owner, conv, [])
        turns = [block(f"t{i}", 3) for i in range(40)]
        await asyncio.gather(
            *(
                (a if i % 2 else b).responses.save_turn(owner, response(), [], conv["id"], items)
                for i, items in enumerate(turns)
            )
        )
        items = await b.conversations.all_items(owner, conv["id"])
        assert items is not None
        assert_contiguous(items, turns)
    finally:
        await first.close()
        await second.close()
