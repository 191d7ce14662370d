"""The lists the console pages through: responses filtered by status and model, and an
owner's conversations, on both backends."""

from __future__ import annotations

import pytest

from loom.store import Stores
from tests.store.helpers import conversation, response


async def test_responses_filter_by_status_and_model(
    stores: Stores, owner: str, stranger: str
) -> None:
    ok = response(created_at=1)
    failed = response(created_at=2, status="failed")
    other_model = {**response(created_at=3), "model": "other/model"}
    for made in (ok, failed, other_model):
        await stores.responses.save_turn(owner, made, [])
    await stores.responses.save_turn(stranger, response(created_at=4, status="failed"), [])

    async def ids(**filters) -> list[str]:
        rows, _ = await stores.responses.list(owner, limit=10, order="desc", **filters)
        return [r["id"] for r in rows]

    assert await ids(status="failed") == [failed["id"]]
    assert await ids(model="test/model") == [failed["id"], ok["id"]]
    assert await ids(status="completed", model="test/model") == [ok["id"]]
    assert await ids(model="other/model") == [other_model["id"]]
    assert await ids(status="cancelled") == []
    # paging keeps the filter
    first, more = await stores.responses.list(owner, limit=1, order="desc", model="test/model")
    assert ([r["id"] for r in first], more) == ([failed["id"]], True)
    rest, more = await stores.responses.list(
        owner, after=failed["id"], limit=1, order="desc", model="test/model"
    )
    assert ([r["id"] for r in rest], more) == ([ok["id"]], False)


@pytest.mark.parametrize("order", ["asc", "desc"])
async def test_conversations_list_pages_one_owner(
    stores: Stores, owner: str, stranger: str, order: str
) -> None:
    made = []
    for created_at in (3, 1, 2, 2, 5):
        conv = {**conversation(), "created_at": created_at}
        await stores.conversations.create(owner, conv, [])
        made.append(conv)
    await stores.conversations.create(stranger, conversation(), [])
    expected = [c["id"] for c in sorted(made, key=lambda c: (c["created_at"], c["id"]))]
    if order == "desc":
        expected.reverse()

    seen, after = [], None
    while True:
        rows, has_more = await stores.conversations.list(owner, after=after, limit=2, order=order)
        seen += [r["id"] for r in rows]
        if not has_more:
            break
        after = rows[-1]["id"]
    assert seen == expected
    assert await stores.conversations.list(owner, after="conv_unknown") == ([], False)
    stranger_rows, _ = await stores.conversations.list(stranger, limit=10)
    assert not {r["id"] for r in stranger_rows} & set(expected)
