"""ResponseStore: save_turn (upsert, atomic with its conversation), get, list, delete, chain."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from loom.store import Database, DuplicateIdError, Stores
from loom.store.schema import conversation_items as items_t
from tests.store.helpers import conversation, message_item, new_id, response


async def test_save_turn_then_get(stores: Stores, owner: str) -> None:
    made = response()
    items = [message_item("hello")]
    await stores.responses.save_turn(owner, made, items)
    assert await stores.responses.get(owner, made["id"]) == {
        "response": made,
        "input_items": items,
        "conversation_id": None,
    }
    assert await stores.responses.get(owner, "resp_unknown") is None


async def test_save_turn_upserts_and_keeps_list_position(stores: Stores, owner: str) -> None:
    first = response(created_at=100, status="in_progress")
    second = response(created_at=100)
    await stores.responses.save_turn(owner, first, [message_item("a")])
    await stores.responses.save_turn(owner, second, [message_item("b")])
    finished = {**first, "status": "completed", "output": [message_item("done", "assistant")]}
    await stores.responses.save_turn(owner, finished, [message_item("a")])

    got = await stores.responses.get(owner, first["id"])
    assert got is not None
    assert got["response"] == finished
    rows, has_more = await stores.responses.list(owner, limit=10)
    # One row per response, and the re-saved one keeps its place in insertion order.
    assert ([r["id"] for r in rows], has_more) == ([first["id"], second["id"]], False)
    assert rows[0]["status"] == "completed"


async def test_save_turn_refuses_another_owners_id(
    stores: Stores, owner: str, stranger: str
) -> None:
    made = response()
    await stores.responses.save_turn(owner, made, [])
    with pytest.raises(DuplicateIdError):
        await stores.responses.save_turn(stranger, {**made, "status": "failed"}, [])
    got = await stores.responses.get(owner, made["id"])
    assert got is not None and got["response"]["status"] == "completed"
    assert await stores.responses.get(stranger, made["id"]) is None


@pytest.mark.parametrize("order", ["asc", "desc"])
async def test_list_orders_and_pages(stores: Stores, owner: str, order) -> None:
    made = [response(created_at=t) for t in (5, 1, 3, 1, 5, 2, 4)]
    for r in made:
        await stores.responses.save_turn(owner, r, [])
    by_time = sorted(range(len(made)), key=lambda i: (made[i]["created_at"], i))
    expected = [made[i]["id"] for i in by_time]
    if order == "desc":
        expected.reverse()

    seen, after = [], None
    while True:
        rows, has_more = await stores.responses.list(owner, after=after, limit=3, order=order)
        seen += [r["id"] for r in rows]
        if not has_more:
            break
        assert len(rows) == 3
        after = rows[-1]["id"]
    assert seen == expected
    assert await stores.responses.list(owner, after="resp_unknown") == ([], False)


async def test_delete(stores: Stores, owner: str) -> None:
    made = response()
    await stores.responses.save_turn(owner, made, [])
    assert await stores.responses.delete(owner, made["id"]) is True
    assert await stores.responses.get(owner, made["id"]) is None
    assert await stores.responses.list(owner) == ([], False)
    assert await stores.responses.delete(owner, made["id"]) is False


async def test_chain_follows_previous_response_ids(stores: Stores, owner: str) -> None:
    first = response(created_at=1)
    second = response(created_at=2, previous=first["id"])
    third = response(created_at=3, previous=second["id"])
    unrelated = response(created_at=4)
    inputs = {}
    for r in (first, second, third, unrelated):
        inputs[r["id"]] = [message_item(f"input of {r['id']}")]
        await stores.responses.save_turn(owner, r, inputs[r["id"]])

    async def chain_ids(id: str) -> list[str] | None:
        chain = await stores.responses.chain(owner, id)
        return None if chain is None else [link["response"]["id"] for link in chain]

    assert await stores.responses.chain(owner, third["id"]) == [
        {"response": r, "input_items": inputs[r["id"]]} for r in (first, second, third)
    ]
    assert await chain_ids(first["id"]) == [first["id"]]
    assert await chain_ids("resp_unknown") is None

    # A deleted link ends the chain there.
    await stores.responses.delete(owner, second["id"])
    assert await chain_ids(third["id"]) == [third["id"]]


async def test_chain_does_not_cross_owners(stores: Stores, owner: str, stranger: str) -> None:
    mine = response(created_at=1)
    theirs = response(created_at=2, previous=mine["id"])
    await stores.responses.save_turn(owner, mine, [])
    await stores.responses.save_turn(stranger, theirs, [])
    assert await stores.responses.chain(owner, theirs["id"]) is None
    chain = await stores.responses.chain(stranger, theirs["id"])
    assert [link["response"]["id"] for link in chain or []] == [theirs["id"]]


async def test_another_owner_sees_nothing(stores: Stores, owner: str, stranger: str) -> None:
    made = response()
    await stores.responses.save_turn(owner, made, [])
    assert await stores.responses.get(stranger, made["id"]) is None
    assert await stores.responses.list(stranger) == ([], False)
    assert await stores.responses.list(stranger, after=made["id"]) == ([], False)
    assert await stores.responses.chain(stranger, made["id"]) is None
    assert await stores.responses.delete(stranger, made["id"]) is False
    assert await stores.responses.get(owner, made["id"]) is not None


async def test_save_turn_appends_to_its_conversation(stores: Stores, owner: str) -> None:
    conv = conversation()
    opening = [message_item("first")]
    await stores.conversations.create(owner, conv, opening)
    made = response()
    turn = [message_item("question"), message_item("answer", "assistant")]
    await stores.responses.save_turn(owner, made, turn[:1], conv["id"], turn)

    got = await stores.responses.get(owner, made["id"])
    assert got is not None and got["conversation_id"] == conv["id"]
    assert await stores.conversations.all_items(owner, conv["id"]) == opening + turn


async def test_save_turn_with_unknown_conversation_writes_nothing(
    stores: Stores, owner: str, stranger: str
) -> None:
    made = response()
    with pytest.raises(LookupError):
        await stores.responses.save_turn(owner, made, [], new_id("conv"), [message_item("x")])
    assert await stores.responses.get(owner, made["id"]) is None

    # Someone else's conversation is as unknown as a missing one.
    conv = conversation()
    await stores.conversations.create(stranger, conv, [])
    with pytest.raises(LookupError):
        await stores.responses.save_turn(owner, made, [], conv["id"], [message_item("x")])
    assert await stores.responses.get(owner, made["id"]) is None
    assert await stores.conversations.all_items(stranger, conv["id"]) == []


async def test_save_turn_failing_midway_rolls_back_everything(stores: Stores, owner: str) -> None:
    conv = conversation()
    existing = message_item("first")
    await stores.conversations.create(owner, conv, [existing])
    earlier = response()
    await stores.responses.save_turn(owner, earlier, [], conv["id"], [message_item("kept")])
    before = await stores.conversations.all_items(owner, conv["id"])

    # The second item repeats an id already in the conversation: the insert fails after
    # the response row and the conversation's position counter were written.
    made = response()
    with pytest.raises(DuplicateIdError):
        await stores.responses.save_turn(
            owner, made, [], conv["id"], [message_item("new"), existing]
        )
    assert await stores.responses.get(owner, made["id"]) is None
    assert await stores.conversations.all_items(owner, conv["id"]) == before

    # The conversation still takes turns, and they follow on directly.
    after = [message_item("next")]
    await stores.responses.save_turn(owner, response(), [], conv["id"], after)
    assert await stores.conversations.all_items(owner, conv["id"]) == before + after


async def positions(db: Database, conversation_id: str) -> list[int]:
    query = sa.select(items_t.c.position).where(items_t.c.conversation_id == conversation_id)
    async with db.read() as conn:
        return sorted((await conn.execute(query)).scalars())


async def test_save_turn_over_another_owners_id_leaves_the_conversation_untouched(
    db: Database, stores: Stores, owner: str, stranger: str
) -> None:
    """The response is refused after nothing else was checked: the conversation's items
    and its position counter must stay as they were (one statement on PostgreSQL)."""
    taken = response()
    await stores.responses.save_turn(stranger, taken, [])
    conv = conversation()
    await stores.conversations.create(owner, conv, [message_item("first")])
    before = await stores.conversations.all_items(owner, conv["id"])

    with pytest.raises(DuplicateIdError):
        await stores.responses.save_turn(
            owner, {**taken, "status": "failed"}, [], conv["id"], [message_item("lost")]
        )
    assert await stores.conversations.all_items(owner, conv["id"]) == before
    theirs = await stores.responses.get(stranger, taken["id"])
    assert theirs is not None and theirs["response"]["status"] == "completed"

    # No position was taken by the refused turn: the next one follows on directly.
    await stores.responses.save_turn(owner, response(), [], conv["id"], [message_item("next")])
    assert await positions(db, conv["id"]) == [0, 1]


async def test_save_turn_on_another_owners_conversation_keeps_the_stored_response(
    stores: Stores, owner: str, stranger: str
) -> None:
    """Saving a response again fails as a whole when its conversation is not the owner's:
    the earlier record stays, not the upserted one."""
    made = response(status="in_progress")
    await stores.responses.save_turn(owner, made, [message_item("q")])
    theirs = conversation()
    await stores.conversations.create(stranger, theirs, [])

    with pytest.raises(LookupError):
        await stores.responses.save_turn(
            owner, {**made, "status": "completed"}, [], theirs["id"], [message_item("x")]
        )
    got = await stores.responses.get(owner, made["id"])
    assert got is not None
    assert got["response"]["status"] == "in_progress" and got["conversation_id"] is None
    assert len(got["input_items"]) == 1
    assert await stores.conversations.all_items(stranger, theirs["id"]) == []


@pytest.mark.parametrize(
    "backend", [pytest.param("postgresql", marks=pytest.mark.postgresql)], indirect=False
)
async def test_on_postgresql_a_turn_is_one_statement_each_way(
    db: Database, stores: Stores, owner: str
) -> None:
    """One round trip per save and per history read: a single statement, no BEGIN or
    COMMIT around it (what the driver sends, as asyncpg's query log sees it)."""
    assert db.dialect_name == "postgresql"
    conv = conversation()
    await stores.conversations.create(owner, conv, [])
    sent: list[str] = []
    watched: list[Any] = []

    def record(query: Any) -> None:
        sent.append(" ".join(query.query.split()))

    def watch(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
        driver = dbapi_conn.driver_connection
        if driver not in watched:
            driver.add_query_logger(record)
            watched.append(driver)

    sa.event.listen(db.engine.sync_engine.pool, "checkout", watch)
    try:
        await stores.responses.save_turn(owner, response(), [])
        turn = [message_item("q"), message_item("a", "assistant")]
        await stores.responses.save_turn(owner, response(), turn[:1], conv["id"], turn)
        # A round trip of its own, so the query log's callbacks have run by its end.
        assert await stores.conversations.all_items(owner, conv["id"]) == turn
    finally:
        sa.event.remove(db.engine.sync_engine.pool, "checkout", watch)
        for driver in watched:
            driver.remove_query_logger(record)
    assert len(sent) == 3, sent
    assert sent[0].startswith("INSERT INTO responses")
    assert sent[1].startswith("SELECT loom_save_turn(")
    assert sent[2].startswith("SELECT conversations.deletions")
