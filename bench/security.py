"""What the security middleware costs per request, measured in-process and alone.

    .venv/bin/python -m bench.security

Times `SecurityMiddleware` around an app that answers at once, against the bare app, for:
auth off; a configured key; a database key (served from the key cache); and a configured
key with both per-key limits on. The difference is the middleware's CPU per request; a
streamed response passes it once, so this is also its cost per streamed response.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

from loom.config import AuthSettings
from loom.security.keys import KeyRing, issue_key
from loom.security.limits import KeyLimiter
from loom.security.middleware import Guard, SecurityMiddleware
from loom.store import open_stores

N = 20_000


async def _app(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


async def _receive():
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send(message):
    return None


def _scope(key: str | None) -> dict:
    headers = [(b"content-type", b"application/json"), (b"content-length", b"120")]
    if key:
        headers.append((b"authorization", f"Bearer {key}".encode()))
    return {"type": "http", "method": "POST", "path": "/v1/responses", "headers": headers}


async def _per_call_us(app, key: str | None) -> float:
    for _ in range(1000):
        await app(_scope(key), _receive, _send)
    start = time.process_time()
    for _ in range(N):
        await app(_scope(key), _receive, _send)
    return (time.process_time() - start) / N * 1e6


def _guarded(keys: KeyRing | None, limiter: KeyLimiter | None = None) -> SecurityMiddleware:
    guard = Guard(limiter or KeyLimiter(0, 0), 32 * 1024 * 1024)
    guard.keys = keys
    return SecurityMiddleware(_app, guard)


async def main() -> None:
    configured = AuthSettings(api_keys={"sk-configured": "alice", "sk-other": "bob"})
    with tempfile.TemporaryDirectory() as tmp:
        stores = await open_stores(f"sqlite+aiosqlite:///{Path(tmp) / 'b.db'}")
        try:
            made = await issue_key(stores.api_keys, "carol", None)
            ring = KeyRing(configured, stores.api_keys, enabled=True)
            bare = await _per_call_us(_app, None)
            cases = {
                "auth off": (_guarded(None), None),
                "configured key": (_guarded(ring), "sk-configured"),
                "database key (cached)": (_guarded(ring), made["value"]),
                "configured key + limits": (
                    _guarded(ring, KeyLimiter(10_000, 10_000_000)),
                    "sk-configured",
                ),
            }
            print(f"bare app: {bare:.2f} us per request")
            for name, (app, key) in cases.items():
                cost = await _per_call_us(app, key) - bare
                print(f"{name:26s} +{cost:6.2f} us CPU per request ({cost / 1000:.4f} ms)")
        finally:
            await stores.close()


if __name__ == "__main__":
    asyncio.run(main())
