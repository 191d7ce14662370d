"""PostgreSQL group commit: plain turns saved together in one statement, each caller still
getting its own outcome (saved, another owner's id, or its own error)."""

from __future__ import annotations

import asyncio

import pytest

from loom.store import Database, DuplicateIdError, Stores
from tests.store.helpers import message_item, response

pytestmark = pytest.mark.parametrize(
    "backend", [pytest.param("postgresql", marks=pytest.mark.postgresql)], indirect=False
)


async def test_turns_that_finish_together_are_saved_in_fewer_statements(
    db: Database, stores: Stores, owner: str
) -> None:
    committer = db.pg_committer
    assert committer is not None
    before = (committer.statements, committer.rows)
    made = [response(created_at=1_700_000_000.123456789 + n * 0.001) for n in range(40)]
    inputs = {r["id"]: [message_item(f"question {n}")] for n, r in enumerate(made)}
    await asyncio.gather(*(stores.responses.save_turn(owner, r, inputs[r["id"]]) for r in made))
    statements = committer.statements - before[0]
    assert committer.rows - before[1] == 40
    assert statements < 40  # the first went alone; the others waited for it, together
    for r in made:
        stored = await stores.responses.get(owner, r["id"])
        assert stored is not None
        assert stored["response"] == r  # created_at included, exactly
        assert stored["input_items"] == inputs[r["id"]]
    rows, _ = await stores.responses.list(owner, limit=100)
    assert [row["id"] for row in rows] == [r["id"] for r in made]


async def test_another_owners_id_fails_its_own_save_only(
    db: Database, stores: Stores, owner: str
) -> None:
    taken = response()
    await stores.responses.save_turn("someone-else", taken, [])
    others = [response() for _ in range(5)]
    results = await asyncio.gather(
        stores.responses.save_turn(owner, {**taken, "status": "failed"}, []),
        *(stores.responses.save_turn(owner, r, []) for r in others),
        return_exceptions=True,
    )
    assert isinstance(results[0], DuplicateIdError)
    assert results[1:] == [None] * 5
    assert (await stores.responses.get("someone-else", taken["id"]))["response"] == taken
    assert await stores.responses.get(owner, taken["id"]) is None
    for r in others:
        assert await stores.responses.get(owner, r["id"]) is not None


async def test_one_id_twice_in_a_group_is_saved_twice_in_order(
    db: Database, stores: Stores, owner: str
) -> None:
    first = response(status="in_progress")
    done = {**first, "status": "completed"}
    filler = [response() for _ in range(3)]
    await asyncio.gather(
        *(stores.responses.save_turn(owner, r, []) for r in filler),
        stores.responses.save_turn(owner, first, []),
        stores.responses.save_turn(owner, done, []),
    )
    assert (await stores.responses.get(owner, first["id"]))["response"] == done


async def test_a_row_the_statement_refuses_fails_alone(
    db: Database, stores: Stores, owner: str
) -> None:
    """A group whose statement fails is saved again row by row: the bad row's caller gets
    the error, the others are saved."""
    committer = db.pg_committer
    assert committer is not None
    good = [response() for _ in range(4)]
    bad = response()
    values = {
        "id": bad["id"],
        "owner": owner,
        "created_at": "not a number",  # what PostgreSQL refuses to cast to float8
        "status": "completed",
        "model": "m",
        "previous_response_id": None,
        "conversation_id": None,
        "response": "{}",
        "input_items": "[]",
    }
    results = await asyncio.gather(
        *(stores.responses.save_turn(owner, r, []) for r in good[:2]),
        committer.upsert(values),
        *(stores.responses.save_turn(owner, r, []) for r in good[2:]),
        return_exceptions=True,
    )
    assert isinstance(results[2], Exception)
    assert "float" in str(results[2]) or "double precision" in str(results[2])
    assert results[:2] + results[3:] == [None] * 4
    for r in good:
        assert await stores.responses.get(owner, r["id"]) is not None
    assert await stores.responses.get(owner, bad["id"]) is None
