"""`loom serve` prints what it serves, and warns when it is open beyond loopback."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from loom.config import load_settings
from loom.startup import is_loopback, stored_key_count, summary
from tests.support.servers import free_port


def settings_for(**env: str):
    return load_settings(env={"LOOM_DB_URL": "sqlite+aiosqlite:////tmp/x.db", **env})


def test_summary_names_url_models_storage_auth_docs_and_console():
    settings = settings_for(
        OPENAI_API_KEY="sk-secret-key",
        OPENAI_BASE_URL="http://127.0.0.1:9/v1",
        LOOM_DB_URL="postgresql+asyncpg://loom:hunter2@db.internal/loom",
    )
    text = summary(settings)
    assert text.splitlines()[0].endswith("the OpenAI API at http://127.0.0.1:8321/v1")
    assert "local/smollm2-135m (embedded" in text
    assert "openai/… → http://127.0.0.1:9/v1 (models from its /models)" in text
    assert "database: postgresql+asyncpg://loom:***@db.internal/loom" in text
    assert "data dir: " in text and "auth:     off" in text
    assert "http://127.0.0.1:8321/docs and http://127.0.0.1:8321/openapi.json" in text
    assert "console:  http://127.0.0.1:8321/console" in text
    assert "WARNING" not in text
    assert "hunter2" not in text and "sk-secret-key" not in text
    assert len(text.splitlines()) <= 10


@pytest.mark.parametrize(
    ("host", "warned"),
    [("127.0.0.1", False), ("::1", False), ("localhost", False), ("0.0.0.0", True),
     ("192.168.1.5", True), ("my-host.example", True)],
)  # fmt: skip
def test_warning_beyond_loopback_with_auth_off(host, warned):
    settings = settings_for(LOOM_LOCAL_MODELS="off", LOOM_HOST=host)
    assert is_loopback(host) is not warned
    assert ("WARNING: listening on " + host in summary(settings)) is warned


def test_loom_serve_prints_the_summary_first(tmp_path: Path):
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("LOOM_", "OPENAI_"))},
        "LOOM_LOCAL_MODELS": "off",
        "LOOM_DB_URL": f"sqlite+aiosqlite:///{tmp_path}/loom.db",
        "LOOM_PORT": str(port),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "loom.cli", "serve", "--host", "0.0.0.0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True)
    reader.start()
    try:
        seen = []
        while not any(line.startswith("WARNING") for line in seen):
            seen.append(lines.get(timeout=60).rstrip("\n"))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert seen[0] == f"Loom 0.1.0: the OpenAI API at http://0.0.0.0:{port}/v1"
    assert seen[1] == "  models:   none configured"
    assert seen[2] == f"  database: sqlite+aiosqlite:///{tmp_path}/loom.db"
    assert seen[-1].startswith("WARNING: listening on 0.0.0.0, beyond loopback, with auth off")


def test_auth_on_from_configured_or_stored_keys_and_no_warning():
    settings = settings_for(
        LOOM_LOCAL_MODELS="off", LOOM_HOST="0.0.0.0", LOOM_API_KEYS="sk-abc=ann"
    )
    text = summary(settings)
    assert "auth:     on: requests need an API key (1 configured, 0 in the database" in text
    assert "WARNING" not in text and "sk-abc" not in text
    stored = summary(settings_for(LOOM_LOCAL_MODELS="off", LOOM_HOST="0.0.0.0"), stored_keys=2)
    assert "(0 configured, 2 in the database, admin API off)" in stored
    assert "WARNING" not in stored


async def test_stored_key_count_of_a_fresh_database_is_zero(tmp_path: Path):
    assert await stored_key_count(f"sqlite+aiosqlite:///{tmp_path}/fresh.db") == 0
