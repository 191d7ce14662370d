"""PromptStore on SQLite and PostgreSQL: versions, the default, stale updates, owners."""

from __future__ import annotations

import asyncio
import secrets

import pytest

from loom.store import StaleVersionError, Stores, UnknownVersionError


def new_prompt_id() -> str:
    return f"pmpt_{secrets.token_hex(24)}"


async def test_versions_default_and_delete(stores: Stores, owner: str) -> None:
    pid = new_prompt_id()
    first = await stores.prompts.create(owner, pid, "Hi {{name}}", ["name"])
    assert first == {
        "prompt_id": pid,
        "version": 1,
        "prompt": "Hi {{name}}",
        "variables": ["name"],
        "is_default": True,
    }
    second = await stores.prompts.update(
        owner, pid, based_on=1, text="Hello {{name}}", variables=["name"], set_as_default=False
    )
    assert second is not None and (second["version"], second["is_default"]) == (2, False)
    assert (await stores.prompts.get(owner, pid))["version"] == 1
    assert (await stores.prompts.get(owner, pid, 2))["prompt"] == "Hello {{name}}"
    assert await stores.prompts.get(owner, pid, 3) is None

    chosen = await stores.prompts.set_default(owner, pid, 2)
    assert chosen is not None and chosen["is_default"] is True
    versions = await stores.prompts.versions(owner, pid)
    assert [(v["version"], v["is_default"]) for v in versions] == [(1, False), (2, True)]
    assert [p["version"] for p in await stores.prompts.list(owner) if p["prompt_id"] == pid] == [2]
    with pytest.raises(UnknownVersionError):
        await stores.prompts.set_default(owner, pid, 5)

    assert await stores.prompts.delete(owner, pid) is True
    assert await stores.prompts.get(owner, pid) is None
    assert await stores.prompts.versions(owner, pid) is None
    assert await stores.prompts.delete(owner, pid) is False


async def test_concurrent_updates_from_one_version_make_one_new_version(
    stores: Stores, owner: str
) -> None:
    pid = new_prompt_id()
    await stores.prompts.create(owner, pid, "v1", [])
    results = await asyncio.gather(
        *(
            stores.prompts.update(
                owner, pid, based_on=1, text=f"edit {n}", variables=[], set_as_default=True
            )
            for n in range(4)
        ),
        return_exceptions=True,
    )
    won = [r for r in results if isinstance(r, dict)]
    lost = [r for r in results if isinstance(r, StaleVersionError)]
    assert len(won) == 1 and len(lost) == 3 and all(e.latest == 2 for e in lost)
    assert [v["version"] for v in await stores.prompts.versions(owner, pid)] == [1, 2]


async def test_other_owners_see_nothing(stores: Stores, owner: str, stranger: str) -> None:
    pid = new_prompt_id()
    await stores.prompts.create(owner, pid, "mine", [])
    assert await stores.prompts.get(stranger, pid) is None
    assert await stores.prompts.versions(stranger, pid) is None
    assert pid not in [p["prompt_id"] for p in await stores.prompts.list(stranger)]
    update = await stores.prompts.update(
        stranger, pid, based_on=1, text="theirs", variables=[], set_as_default=True
    )
    assert update is None
    assert await stores.prompts.set_default(stranger, pid, 1) is None
    assert await stores.prompts.delete(stranger, pid) is False
    assert (await stores.prompts.get(owner, pid))["prompt"] == "mine"
