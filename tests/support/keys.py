"""Loom with API keys on, for the auth, isolation and limits e2e tests.

Keys come from both places at once: `auth.api_keys` in a YAML file (alice) and
`LOOM_API_KEYS` (bob), plus an admin key. Database keys are trusted for 0 s, so a key
revoked by the CLI (another process, as far as the server knows) is refused at once.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import openai

from tests.support.servers import ThreadedServer

ALICE_KEY = "sk-test-alice-0123456789"
BOB_KEY = "sk-test-bob-9876543210"
ADMIN_KEY = "sk-test-admin-secret"


def authed_env(base: dict[str, str], workdir: Path, db_url: str, **extra: str) -> dict[str, str]:
    config = workdir / "loom.yaml"
    config.write_text(f"auth:\n  api_keys:\n    {ALICE_KEY}: alice\n  key_cache_seconds: 0\n")
    return {
        **base,
        "LOOM_CONFIG": str(config),
        "LOOM_DB_URL": db_url,
        "LOOM_API_KEYS": f"{BOB_KEY}=bob",
        "LOOM_ADMIN_KEY": ADMIN_KEY,
        **extra,
    }


def sdk(server: ThreadedServer, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0)


def http(server: ThreadedServer, key: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=server.url, headers=headers, timeout=30, trust_env=False)
