"""API keys: how they are made, kept (a sha256 digest and a short hint, never the key) and
matched to their owner.

Keys come from two places: the configuration (`auth.api_keys`, `LOOM_API_KEYS`), hashed at
load, and the `api_keys` table, managed at run time by the admin API or `loom keys`.
Configured digests are compared with `hmac.compare_digest` against every entry, so the time
taken does not depend on which key matched or how much of it. A database key is found by
its digest (an index lookup, which can at most reveal something about a sha256 digest, not
about a key) and then confirmed with `compare_digest` too. Keys found in the database are
trusted for `key_cache_seconds`, so the hot path does not read the database on every
request; a key revoked on this process is forgotten at once, on other processes within
that many seconds.
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Protocol

from loom.config import AuthSettings, key_digest

KEY_PREFIX = "sk-loom-"
_CACHE_LIMIT = 10_000


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def redacted(key: str) -> str:
    """The hint shown for a key after creation: its prefix and last four characters."""
    return f"{KEY_PREFIX}...{key[-4:]}" if key.startswith(KEY_PREFIX) else f"...{key[-4:]}"


@dataclass(frozen=True)
class Principal:
    owner: str
    admin: bool = False
    key_id: str | None = None  # set for a key from the database


class KeyLookup(Protocol):
    """The database side: the owner and id of an active key with this digest, if any."""

    async def find_active(self, digest: str) -> tuple[str, str] | None: ...


class KeyRing:
    """Every key Loom accepts, and the admin key."""

    def __init__(self, settings: AuthSettings, lookup: KeyLookup | None, enabled: bool) -> None:
        self._configured = list(settings.api_keys.items())
        self._admin = settings.admin_key
        self._lookup = lookup
        self._ttl = settings.key_cache_seconds
        self._cache: dict[str, tuple[Principal, float]] = {}
        self.enabled = enabled

    @property
    def has_admin(self) -> bool:
        return self._admin is not None

    async def principal(self, key: str) -> Principal | None:
        """Who `key` belongs to, or None if it is no key of this server."""
        digest = key_digest(key)
        if self._admin is not None and hmac.compare_digest(self._admin, digest):
            return Principal(owner="admin", admin=True)
        owner = None
        for stored, stored_owner in self._configured:  # no early exit: constant time
            if hmac.compare_digest(stored, digest):
                owner = stored_owner
        if owner is not None:
            return Principal(owner=owner)
        cached = self._cache.get(digest)
        now = time.monotonic()
        if cached is not None and cached[1] > now:
            return cached[0]
        if self._lookup is None:
            return None
        found = await self._lookup.find_active(digest)
        if found is None:
            self._cache.pop(digest, None)
            return None
        key_id, owner = found
        principal = Principal(owner=owner, key_id=key_id)
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[digest] = (principal, now + self._ttl)
        return principal

    def forget(self, key_id: str) -> None:
        """A key was revoked here: stop trusting it now, not when its cache entry lapses."""
        for digest, (principal, _) in list(self._cache.items()):
            if principal.key_id == key_id:
                del self._cache[digest]


class KeyStore(KeyLookup, Protocol):
    async def create(
        self, *, key_id: str, digest: str, owner: str, name: str | None, redacted_value: str
    ) -> dict: ...


async def issue_key(store: KeyStore, owner: str, name: str | None) -> dict:
    """Make a key for `owner` and keep its digest; the returned `value` is the only copy."""
    key = new_key()
    record = await store.create(
        key_id=f"key_{secrets.token_hex(12)}",
        digest=key_digest(key),
        owner=owner,
        name=name,
        redacted_value=redacted(key),
    )
    return {**record, "value": key}
