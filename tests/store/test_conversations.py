"""ConversationStore: lifecycle, items, paging through a long history, and index use."""

from __future__ import annotations

import re
from typing import Any

import pytest
import sqlalchemy as sa

from loom.store import Database, DuplicateIdError, Stores
from tests.store.helpers import conversation, message_item, new_id


async def test_create_get_update_delete(stores: Stores, owner: str) -> None:
    conv = conversation({"topic": "demo"})
    items = [message_item("hi"), message_item("hello", "assistant")]
    await stores.conversations.create(owner, conv, items)
    assert await stores.conversations.get(owner, conv["id"]) == conv
    assert await stores.conversations.all_items(owner, conv["id"]) == items

    updated = await stores.conversations.update_metadata(owner, conv["id"], {"topic": "new"})
    assert updated == {**conv, "metadata": {"topic": "new"}}
    assert await stores.conversations.get(owner, conv["id"]) == updated

    assert await stores.conversations.delete(owner, conv["id"]) is True
    assert await stores.conversations.get(owner, conv["id"]) is None
    assert await stores.conversations.all_items(owner, conv["id"]) is None
    assert await stores.conversations.get_item(owner, conv["id"], items[0]["id"]) is None
    assert await stores.conversations.delete(owner, conv["id"]) is False
    assert await stores.conversations.update_metadata(owner, conv["id"], {}) is None

    # Its items went with it: the same ids can be used again.
    await stores.conversations.create(owner, conv, items[:1])
    assert await stores.conversations.all_items(owner, conv["id"]) == items[:1]


async def test_create_refuses_a_duplicate_id(stores: Stores, owner: str) -> None:
    conv = conversation()
    await stores.conversations.create(owner, conv, [message_item("a")])
    with pytest.raises(DuplicateIdError):
        await stores.conversations.create(owner, {**conv, "metadata": {"x": "y"}}, [])
    assert await stores.conversations.get(owner, conv["id"]) == conv


async def test_create_with_repeated_item_ids_writes_nothing(stores: Stores, owner: str) -> None:
    conv = conversation()
    item = message_item("a")
    with pytest.raises(DuplicateIdError):
        await stores.conversations.create(owner, conv, [item, item])
    assert await stores.conversations.get(owner, conv["id"]) is None


async def test_append_and_items(stores: Stores, owner: str) -> None:
    conv = conversation()
    await stores.conversations.create(owner, conv, [])
    assert await stores.conversations.all_items(owner, conv["id"]) == []
    assert await stores.conversations.list_items(owner, conv["id"]) == ([], False)

    first = [message_item("1"), message_item("2")]
    second = [message_item("3")]
    assert await stores.conversations.append_items(owner, conv["id"], first) is True
    assert await stores.conversations.append_items(owner, conv["id"], []) is True
    assert await stores.conversations.append_items(owner, conv["id"], second) is True
    assert await stores.conversations.all_items(owner, conv["id"]) == first + second
    assert await stores.conversations.append_items(owner, new_id("conv"), second) is False


async def test_append_joins_a_callers_transaction(db: Database, owner: str) -> None:
    stores = Stores.on(db)
    conv = conversation()
    await stores.conversations.create(owner, conv, [])
    with pytest.raises(RuntimeError):
        async with db.write() as conn:
            ok = await stores.conversations.append_items(
                owner, conv["id"], [message_item("x")], conn=conn
            )
            assert ok is True
            raise RuntimeError("the caller's transaction fails")
    assert await stores.conversations.all_items(owner, conv["id"]) == []


async def test_get_and_delete_item(stores: Stores, owner: str) -> None:
    conv = conversation()
    items = [message_item(str(i)) for i in range(4)]
    await stores.conversations.create(owner, conv, items)
    cid = conv["id"]
    assert await stores.conversations.get_item(owner, cid, items[2]["id"]) == items[2]
    assert await stores.conversations.get_item(owner, cid, "msg_unknown") is None
    assert await stores.conversations.get_item(owner, new_id("conv"), items[2]["id"]) is None

    assert await stores.conversations.delete_item(owner, cid, items[1]["id"]) is True
    assert await stores.conversations.delete_item(owner, cid, items[1]["id"]) is False
    assert await stores.conversations.get_item(owner, cid, items[1]["id"]) is None
    remaining = [items[0], items[2], items[3]]
    assert await stores.conversations.all_items(owner, cid) == remaining
    assert await stores.conversations.list_items(owner, cid, limit=10) == (remaining, False)
    assert await stores.conversations.list_items(owner, cid, after=items[0]["id"]) == (
        remaining[1:],
        False,
    )

    # Deleting the newest item never lets a later one take its place in the order.
    assert await stores.conversations.delete_item(owner, cid, items[3]["id"]) is True
    late = message_item("late")
    await stores.conversations.append_items(owner, cid, [late])
    assert await stores.conversations.all_items(owner, cid) == [items[0], items[2], late]


@pytest.mark.parametrize("page_size", [1, 7, 100])
@pytest.mark.parametrize("order", ["asc", "desc"])
async def test_paging_250_items(stores: Stores, owner: str, page_size: int, order) -> None:
    conv = conversation()
    items = [message_item(f"item {i}") for i in range(250)]
    # Built up the way a conversation grows: an opening batch, then turns.
    await stores.conversations.create(owner, conv, items[:10])
    for start in range(10, 250, 24):
        await stores.conversations.append_items(owner, conv["id"], items[start : start + 24])
    expected = [item["id"] for item in (items if order == "asc" else items[::-1])]

    seen: list[str] = []
    after = None
    pages = 0
    while True:
        page = await stores.conversations.list_items(
            owner, conv["id"], after=after, limit=page_size, order=order
        )
        assert page is not None
        rows, has_more = page
        pages += 1
        seen += [row["id"] for row in rows]
        if not has_more:
            break
        assert len(rows) == page_size
        after = rows[-1]["id"]
    assert seen == expected  # every item once, in order: no gaps, no repeats
    assert pages == -(-250 // page_size)


async def test_list_items_edge_cases(stores: Stores, owner: str) -> None:
    conv = conversation()
    items = [message_item(str(i)) for i in range(3)]
    await stores.conversations.create(owner, conv, items)
    cid = conv["id"]
    assert await stores.conversations.list_items(owner, new_id("conv")) is None
    assert await stores.conversations.list_items(owner, cid, after="msg_unknown") == ([], False)
    assert await stores.conversations.list_items(owner, cid, after=items[2]["id"]) == (
        [],
        False,
    )
    assert await stores.conversations.list_items(owner, cid, limit=3) == (items, False)
    assert await stores.conversations.list_items(owner, cid, limit=2) == (items[:2], True)
    with pytest.raises(ValueError):
        await stores.conversations.list_items(owner, cid, order="sideways")  # type: ignore[arg-type]


async def test_another_owner_sees_nothing(stores: Stores, owner: str, stranger: str) -> None:
    conv = conversation({"k": "v"})
    item = message_item("private")
    await stores.conversations.create(owner, conv, [item])
    cid = conv["id"]
    convs = stores.conversations
    assert await convs.get(stranger, cid) is None
    assert await convs.update_metadata(stranger, cid, {"k": "stolen"}) is None
    assert await convs.append_items(stranger, cid, [message_item("intruder")]) is False
    assert await convs.list_items(stranger, cid) is None
    assert await convs.all_items(stranger, cid) is None
    assert await convs.get_item(stranger, cid, item["id"]) is None
    assert await convs.delete_item(stranger, cid, item["id"]) is False
    assert await convs.delete(stranger, cid) is False
    # Untouched for its owner.
    assert await convs.get(owner, cid) == conv
    assert await convs.all_items(owner, cid) == [item]


async def test_paging_query_walks_the_index(db: Database, owner: str) -> None:
    """A page, first or after a cursor, is an index range scan in item order, not a scan or
    sort of the history: so its cost does not grow with the conversation. (The plan is
    checked rather than timed: a timing ratio fails on a busy machine.)"""
    stores = Stores.on(db)
    conv = conversation()
    items = [message_item(str(i)) for i in range(50)]
    await stores.conversations.create(owner, conv, items)

    statements: list[tuple[str, Any]] = []

    def capture(_conn, _cursor, statement, parameters, _context, _many) -> None:
        if "FROM conversation_items" in statement and "ORDER BY" in statement:
            statements.append((statement, parameters))

    sa.event.listen(db.engine.sync_engine, "before_cursor_execute", capture)
    try:
        for order in ("asc", "desc"):
            await stores.conversations.list_items(owner, conv["id"], limit=5, order=order)
            await stores.conversations.list_items(
                owner, conv["id"], after=items[20]["id"], limit=5, order=order
            )
    finally:
        sa.event.remove(db.engine.sync_engine, "before_cursor_execute", capture)
    assert len(statements) == 4

    async with db.read() as conn:
        for statement, parameters in statements:
            if db.dialect_name == "sqlite":
                explain = f"EXPLAIN QUERY PLAN {statement}"
                rows = (await conn.exec_driver_sql(explain, tuple(parameters))).all()
                plan = "\n".join(str(row[-1]) for row in rows)
                assert "SCAN conversation_items" not in plan, plan
                assert "TEMP B-TREE" not in plan, plan
                assert "SEARCH conversation_items USING" in plan, plan
            else:
                # On a tiny, unanalyzed table the planner may rightly prefer a scan and a
                # sort; price those out to ask whether the index alone answers the query.
                for setting in ("enable_seqscan", "enable_bitmapscan", "enable_sort"):
                    await conn.exec_driver_sql(f"SET LOCAL {setting} = off")
                explain = f"EXPLAIN {statement}"
                rows = (await conn.exec_driver_sql(explain, tuple(parameters))).all()
                plan = "\n".join(str(row[0]) for row in rows)
                assert "Seq Scan" not in plan, plan
                assert "Sort" not in plan, plan
                assert re.search(r"Index Scan (Backward )?using pk_conversation_items", plan), plan
