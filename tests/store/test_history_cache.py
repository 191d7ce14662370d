"""A conversation's cached history never goes stale: what another process (here another
`Database` on the same file or server) appends, deletes or removes is seen at once."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from loom.store import Database, Stores
from loom.store.history_cache import HistoryCache
from tests.store.helpers import conversation, message_item, response


@pytest.fixture
async def other(db_url: str) -> AsyncIterator[Stores]:
    """A second handle on the same database, as another Loom process would have."""
    database = await Database.connect(db_url)
    yield Stores.on(database)
    await database.close()


async def fresh_read(db_url: str, owner: str, conv_id: str) -> list[dict] | None:
    """The history read by a process with nothing cached."""
    database = await Database.connect(db_url)
    try:
        return await Stores.on(database).conversations.all_items(owner, conv_id)
    finally:
        await database.close()


async def test_cached_history_follows_writes_from_elsewhere(
    stores: Stores, other: Stores, owner: str, db_url: str
) -> None:
    conv = conversation()
    first = [message_item(f"first {i}") for i in range(5)]
    await stores.conversations.create(owner, conv, first)
    assert await stores.conversations.all_items(owner, conv["id"]) == first

    # Appended here, through this process's own turn: cached as it is written.
    turn = [message_item("question"), message_item("answer", role="assistant")]
    await stores.responses.save_turn(owner, response(), turn[:1], conv["id"], turn)
    # Appended by another process: found past the cached position.
    added = [message_item(f"elsewhere {i}") for i in range(3)]
    assert await other.conversations.append_items(owner, conv["id"], added)
    expected = first + turn + added
    assert await stores.conversations.all_items(owner, conv["id"]) == expected
    assert await fresh_read(db_url, owner, conv["id"]) == expected

    # Deleted by another process: the deletion count moved, so it is read whole again.
    assert await other.conversations.delete_item(owner, conv["id"], first[2]["id"])
    expected.remove(first[2])
    assert await stores.conversations.all_items(owner, conv["id"]) == expected

    # A delete and an append together keep the number of items the same: still caught.
    assert await other.conversations.delete_item(owner, conv["id"], first[0]["id"])
    late = [message_item("late")]
    assert await other.conversations.append_items(owner, conv["id"], late)
    expected = expected[1:] + late
    assert await stores.conversations.all_items(owner, conv["id"]) == expected
    assert await fresh_read(db_url, owner, conv["id"]) == expected

    # The conversation deleted elsewhere: unknown here too.
    assert await other.conversations.delete(owner, conv["id"])
    assert await stores.conversations.all_items(owner, conv["id"]) is None


async def test_empty_cached_conversation_deleted_elsewhere_is_unknown(
    stores: Stores, other: Stores, owner: str
) -> None:
    conv = conversation()
    await stores.conversations.create(owner, conv, [])
    assert await stores.conversations.all_items(owner, conv["id"]) == []
    assert await other.conversations.delete(owner, conv["id"])
    assert await stores.conversations.all_items(owner, conv["id"]) is None


async def test_cached_history_is_per_owner(stores: Stores, owner: str, stranger: str) -> None:
    conv = conversation()
    await stores.conversations.create(owner, conv, [message_item("mine")])
    assert await stores.conversations.all_items(owner, conv["id"]) is not None
    assert await stores.conversations.all_items(stranger, conv["id"]) is None


async def test_callers_cannot_change_the_cache(stores: Stores, owner: str) -> None:
    conv = conversation()
    items = [message_item("kept as written")]
    await stores.conversations.create(owner, conv, items)
    items[0]["content"][0]["text"] = "changed by the caller after the write"
    read = await stores.conversations.all_items(owner, conv["id"])
    assert read is not None and read[0]["content"][0]["text"] == "kept as written"
    read.append(message_item("not stored"))
    assert len(await stores.conversations.all_items(owner, conv["id"]) or []) == 1


def test_cache_drops_oldest_conversations_past_its_size() -> None:
    cache = HistoryCache(max_items=5)
    cache.put(("o", "a"), [{"n": i} for i in range(3)], 2, 0)
    cache.put(("o", "b"), [{"n": i} for i in range(2)], 1, 0)
    assert cache.get(("o", "a")) is not None
    cache.put(("o", "c"), [{"n": 0}], 0, 0)  # 6 items: "b" is the least recently used
    assert cache.get(("o", "b")) is None
    assert cache.get(("o", "a")) is not None and cache.get(("o", "c")) is not None
    cache.extend(("o", "c"), 5, [{"n": 5}])  # not right after position 0: dropped
    assert cache.get(("o", "c")) is None
