"""The API key store on SQLite and PostgreSQL: only digests kept, lookup, listing, revoke."""

from __future__ import annotations

import sqlalchemy as sa

from loom.config import AuthSettings, key_digest
from loom.security.keys import KeyRing, issue_key
from loom.store.schema import api_keys as keys_t


async def test_issue_find_list_revoke(stores, owner):
    made = await issue_key(stores.api_keys, owner, "ci")
    key = made["value"]
    assert key.startswith("sk-loom-") and made["redacted_value"].endswith(key[-4:])
    assert await stores.api_keys.find_active(key_digest(key)) == (made["id"], owner)
    assert await stores.api_keys.find_active(key_digest(key + "x")) is None

    async with stores.db.read() as conn:
        rows = (await conn.execute(sa.select(keys_t).where(keys_t.c.id == made["id"]))).all()
    stored = dict(rows[0]._mapping)
    assert key not in {str(v) for v in stored.values()}, "the key itself is never stored"
    assert stored["digest"] == key_digest(key)

    got = await stores.api_keys.get(made["id"])
    assert got is not None and "value" not in got and got["owner"] == owner
    assert got["revoked_at"] is None

    assert await stores.api_keys.revoke(made["id"]) is True
    assert await stores.api_keys.find_active(key_digest(key)) is None
    assert (await stores.api_keys.get(made["id"]))["revoked_at"] is not None
    assert await stores.api_keys.revoke("key_missing") is False


async def test_list_pages_in_creation_order(stores, owner):
    made = [await issue_key(stores.api_keys, owner, f"k{i}") for i in range(3)]
    ids = [m["id"] for m in made]
    seen: list[str] = []
    after = None
    while True:
        page, more = await stores.api_keys.list(after=after, limit=2)
        seen.extend(r["id"] for r in page)
        if not more:
            break
        after = page[-1]["id"]
    assert [i for i in seen if i in ids] == ids
    assert await stores.api_keys.list(after="key_missing") == ([], False)


async def test_key_ring_trusts_a_database_key_until_revoked_here(stores, owner):
    ring = KeyRing(AuthSettings(api_keys={"cfg-key": "carol"}), stores.api_keys, enabled=True)
    made = await issue_key(stores.api_keys, owner, None)
    assert (await ring.principal("cfg-key")).owner == "carol"
    principal = await ring.principal(made["value"])
    assert principal is not None and principal.owner == owner and not principal.admin
    assert await ring.principal("nope") is None
    await stores.api_keys.revoke(made["id"])
    ring.forget(made["id"])
    assert await ring.principal(made["value"]) is None
