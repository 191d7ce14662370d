"""ChatCompletionStore: put/get, list (order, cursor, filters), messages paging, delete."""

from __future__ import annotations

from typing import Any

import pytest

from loom.store import DuplicateIdError, Stores
from tests.store.helpers import new_id


def completion(created: int = 1_700_000_000, model: str = "test/model") -> dict[str, Any]:
    return {
        "id": new_id("chatcmpl"),
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": "hi"},
            }
        ],
    }


MESSAGES = [
    {"role": "system", "content": "be brief"},
    {"role": "user", "content": "hello"},
]


async def test_put_then_get_returns_what_was_stored(stores: Stores, owner: str) -> None:
    made = completion()
    await stores.chat_completions.put(owner, made, MESSAGES, {"topic": "greeting"})
    assert await stores.chat_completions.get(owner, made["id"]) == {
        "completion": made,
        "input_messages": MESSAGES,
        "metadata": {"topic": "greeting"},
    }
    other = completion()
    await stores.chat_completions.put(owner, other, [], None)
    got = await stores.chat_completions.get(owner, other["id"])
    assert got == {"completion": other, "input_messages": [], "metadata": None}


async def test_put_refuses_a_duplicate_id(stores: Stores, owner: str) -> None:
    made = completion()
    await stores.chat_completions.put(owner, made, MESSAGES, None)
    with pytest.raises(DuplicateIdError):
        await stores.chat_completions.put(owner, {**made, "model": "other"}, [], None)
    got = await stores.chat_completions.get(owner, made["id"])
    assert got is not None
    assert got["completion"]["model"] == "test/model"


async def test_list_orders_by_created_then_insertion(stores: Stores, owner: str) -> None:
    # Inserted out of `created` order, with ties that must keep insertion order.
    made = [completion(created=c) for c in (30, 10, 20, 10, 30)]
    for c in made:
        await stores.chat_completions.put(owner, c, MESSAGES, None)
    expected = [made[1], made[3], made[2], made[0], made[4]]

    rows, has_more = await stores.chat_completions.list(owner, limit=10, order="asc")
    assert (rows, has_more) == (expected, False)
    rows, has_more = await stores.chat_completions.list(owner, limit=10, order="desc")
    assert (rows, has_more) == (expected[::-1], False)


@pytest.mark.parametrize("order", ["asc", "desc"])
async def test_list_pages_with_after_and_has_more(stores: Stores, owner: str, order) -> None:
    made = [completion(created=100 + i // 2) for i in range(9)]
    for c in made:
        await stores.chat_completions.put(owner, c, MESSAGES, None)
    expected = [c["id"] for c in (made if order == "asc" else made[::-1])]

    seen: list[str] = []
    after = None
    while True:
        rows, has_more = await stores.chat_completions.list(
            owner, after=after, limit=4, order=order
        )
        seen += [r["id"] for r in rows]
        if not has_more:
            break
        assert len(rows) == 4
        after = rows[-1]["id"]
    assert seen == expected

    rows, has_more = await stores.chat_completions.list(owner, limit=9, order=order)
    assert len(rows) == 9 and has_more is False
    rows, has_more = await stores.chat_completions.list(owner, limit=8, order=order)
    assert len(rows) == 8 and has_more is True


async def test_list_after_an_unknown_id_is_empty(stores: Stores, owner: str) -> None:
    await stores.chat_completions.put(owner, completion(), MESSAGES, None)
    assert await stores.chat_completions.list(owner, after="chatcmpl_nope", limit=5) == (
        [],
        False,
    )


async def test_list_filters_by_model_and_metadata(stores: Stores, owner: str) -> None:
    a = completion(created=1, model="m/a")
    b = completion(created=2, model="m/b")
    c = completion(created=3, model="m/a")
    await stores.chat_completions.put(owner, a, MESSAGES, {"team": "red", "env": "prod"})
    await stores.chat_completions.put(owner, b, MESSAGES, {"team": "red", "env": "dev"})
    await stores.chat_completions.put(owner, c, MESSAGES, None)

    async def ids(**filters) -> list[str]:
        rows, _ = await stores.chat_completions.list(owner, limit=10, **filters)
        return [r["id"] for r in rows]

    assert await ids(model="m/a") == [a["id"], c["id"]]
    assert await ids(model="m/none") == []
    assert await ids(metadata={"team": "red"}) == [a["id"], b["id"]]
    assert await ids(metadata={"team": "red", "env": "dev"}) == [b["id"]]
    assert await ids(metadata={"team": "blue"}) == []
    assert await ids(model="m/a", metadata={"team": "red"}) == [a["id"]]
    assert await ids(model="m/b", metadata={"env": "prod"}) == []


async def test_messages_get_ids_and_page_both_ways(stores: Stores, owner: str) -> None:
    made = completion()
    messages = [
        {"role": "system", "content": "s"},
        {"role": "user", "content": "u1", "id": "own-id"},
        {"role": "assistant", "content": "a1"},
        {"role": "user", "content": "u2"},
        {"role": "user", "content": "u3"},
    ]
    await stores.chat_completions.put(owner, made, messages, None)
    cid = made["id"]
    ids = [f"{cid}-0", "own-id", f"{cid}-2", f"{cid}-3", f"{cid}-4"]

    page, has_more = await stores.chat_completions.messages(owner, cid, limit=100)
    assert [m["id"] for m in page] == ids and has_more is False
    assert page[0] == {"id": f"{cid}-0", "role": "system", "content": "s"}

    for order, expected in (("asc", ids), ("desc", ids[::-1])):
        seen, after = [], None
        while True:
            page, has_more = await stores.chat_completions.messages(
                owner, cid, after=after, limit=2, order=order
            )
            seen += [m["id"] for m in page]
            if not has_more:
                break
            after = page[-1]["id"]
        assert seen == expected

    assert await stores.chat_completions.messages(owner, cid, after="missing", limit=2) == (
        [],
        False,
    )
    assert await stores.chat_completions.messages(owner, "chatcmpl_nope") is None


async def test_delete(stores: Stores, owner: str) -> None:
    made = completion()
    await stores.chat_completions.put(owner, made, MESSAGES, {"k": "v"})
    assert await stores.chat_completions.delete(owner, made["id"]) is True
    assert await stores.chat_completions.get(owner, made["id"]) is None
    assert await stores.chat_completions.list(owner, metadata={"k": "v"}) == ([], False)
    assert await stores.chat_completions.delete(owner, made["id"]) is False
    # The id is free again once deleted.
    await stores.chat_completions.put(owner, made, MESSAGES, None)


async def test_another_owner_sees_nothing(stores: Stores, owner: str, stranger: str) -> None:
    made = completion()
    await stores.chat_completions.put(owner, made, MESSAGES, {"k": "v"})
    cid = made["id"]
    assert await stores.chat_completions.get(stranger, cid) is None
    assert await stores.chat_completions.list(stranger) == ([], False)
    assert await stores.chat_completions.list(stranger, metadata={"k": "v"}) == ([], False)
    assert await stores.chat_completions.list(stranger, after=cid) == ([], False)
    assert await stores.chat_completions.messages(stranger, cid) is None
    assert await stores.chat_completions.delete(stranger, cid) is False
    assert await stores.chat_completions.get(owner, cid) is not None
    assert await stores.chat_completions.list(owner, metadata={"k": "v"}) == ([made], False)
