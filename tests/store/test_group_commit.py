"""SQLite group commit: saves that arrive together share one transaction, and one that
fails is rolled back alone."""

from __future__ import annotations

import asyncio

import pytest

from loom.store import DuplicateIdError, Stores
from tests.store.helpers import conversation, message_item, new_id, response

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


async def test_concurrent_saves_share_transactions(stores: Stores, owner: str) -> None:
    committer = stores.db.committer
    assert committer is not None
    conv = conversation()
    await stores.conversations.create(owner, conv, [])
    turns = [
        (response(), [message_item(f"t{i}"), message_item(f"a{i}", "assistant")]) for i in range(40)
    ]
    saves, batches = committer.saves, committer.batches
    await asyncio.gather(
        *(
            stores.responses.save_turn(owner, made, items[:1], conv["id"], items)
            for made, items in turns
        )
    )
    assert committer.saves - saves == 40
    assert committer.batches - batches < 40  # they finished together: fewer transactions
    for made, _ in turns:
        assert (await stores.responses.get(owner, made["id"])) is not None
    items = await stores.conversations.all_items(owner, conv["id"])
    assert items is not None
    # Each turn's items whole and in order, every turn exactly once.
    assert len(items) == 80
    assert sorted(items[i]["id"] for i in range(0, 80, 2)) == sorted(t[1][0]["id"] for t in turns)
    for i in range(0, 80, 2):
        turn = next(t for _, t in turns if t[0]["id"] == items[i]["id"])
        assert items[i : i + 2] == turn


async def test_a_failing_save_does_not_undo_its_batch(
    stores: Stores, owner: str, stranger: str
) -> None:
    committer = stores.db.committer
    assert committer is not None
    conv = conversation()
    await stores.conversations.create(owner, conv, [])
    taken = response()
    await stores.responses.save_turn(stranger, taken, [])
    good = [response() for _ in range(5)]
    batches = committer.batches
    outcomes = await asyncio.gather(
        stores.responses.save_turn(owner, good[0], [], conv["id"], [message_item("g0")]),
        stores.responses.save_turn(owner, taken, [], conv["id"], [message_item("dup")]),
        stores.responses.save_turn(owner, good[1], [], new_id("conv"), [message_item("x")]),
        *(
            stores.responses.save_turn(owner, r, [], conv["id"], [message_item("g")])
            for r in good[2:]
        ),
        return_exceptions=True,
    )
    assert committer.batches - batches < len(outcomes)
    assert isinstance(outcomes[1], DuplicateIdError)
    assert isinstance(outcomes[2], LookupError)
    assert [o for i, o in enumerate(outcomes) if i not in (1, 2)] == [None] * 4
    assert (await stores.responses.get(owner, good[1]["id"])) is None
    assert (await stores.responses.get(stranger, taken["id"]))["response"] == taken
    for r in (good[0], *good[2:]):
        assert (await stores.responses.get(owner, r["id"])) is not None
    items = await stores.conversations.all_items(owner, conv["id"])
    assert items is not None and len(items) == 4
    assert "dup" not in {item["content"][0]["text"] for item in items}
