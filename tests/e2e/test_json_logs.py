"""`LOOM_LOG_FORMAT=json`: `loom serve` (a real process) writes one JSON object per log
line, each with the request id that the client sent or that Loom made."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx

from tests.support.servers import free_port

SECRET = "sk-never-logged-4242"


def test_json_log_lines_carry_the_request_id(upstream_server, upstream, tmp_path: Path):
    _, up = upstream_server
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "LOOM_PORT": str(port),
        "LOOM_LOG_FORMAT": "json",
        "LOOM_LOG_LEVEL": "debug",
        "LOOM_LOCAL_MODELS": "off",
        "LOOM_DB_URL": f"sqlite+aiosqlite:///{tmp_path / 'loom.db'}",
        "OPENAI_API_KEY": SECRET,
        "OPENAI_BASE_URL": f"{up.url}/v1",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "loom.cli", "serve"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    seen: list[bytes] = []
    try:
        # Wait for uvicorn to say it listens (a JSON record too), on Loom's stderr.
        for line in process.stderr:  # type: ignore[union-attr]
            seen.append(line)
            if b"Uvicorn running on" in line:
                break
        assert process.poll() is None, b"".join(seen).decode()
        base = f"http://127.0.0.1:{port}"
        answered = httpx.get(f"{base}/v1/models", headers={"X-Request-Id": "trace-me-42"})
        assert answered.headers["x-request-id"] == "trace-me-42"
        assert httpx.get(f"{base}/v1/health").headers["x-request-id"] != "trace-me-42"
    finally:
        process.terminate()
        _, rest = process.communicate(timeout=30)
    stderr = b"".join(seen) + rest
    lines = [line for line in stderr.decode().splitlines() if line.strip()]
    assert lines, "loom serve logged nothing"
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"time", "level", "logger", "message", "request_id"} <= set(r) for r in records)
    mine = [r for r in records if r["request_id"] == "trace-me-42"]
    assert any("/v1/models" in r["message"] and r["logger"] == "loom.http" for r in mine)
    assert any(r["logger"].startswith("uvicorn") for r in records)  # uvicorn's lines too
    assert SECRET not in stderr.decode()
