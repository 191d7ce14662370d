"""Shared fixtures: a real upstream on loopback and a real Loom under uvicorn."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from loom.app import build_app
from loom.config import load_settings
from tests.support.servers import ThreadedServer, serve
from tests.support.upstream import FakeUpstream


@pytest.fixture(scope="session")
def upstream_server() -> Iterator[tuple[FakeUpstream, ThreadedServer]]:
    fake = FakeUpstream()
    with serve(fake.app) as server:
        yield fake, server


@pytest.fixture
def upstream(upstream_server) -> Iterator[FakeUpstream]:
    fake, _ = upstream_server
    fake.reset()
    yield fake
    fake.reset()


@contextlib.contextmanager
def run_loom(env: dict[str, str]) -> Iterator[ThreadedServer]:
    """Start Loom with exactly these settings env vars (the process env is not read)."""
    settings = load_settings(env=env)
    with serve(build_app(settings)) as server:
        yield server


@pytest.fixture(scope="session")
def loom_env(upstream_server, tmp_path_factory) -> dict[str, str]:
    _, server = upstream_server
    db = Path(tmp_path_factory.mktemp("loom")) / "loom.db"
    return {
        "OPENAI_API_KEY": "test-key",
        "OPENAI_BASE_URL": f"{server.url}/v1",
        "LOOM_DB_URL": f"sqlite+aiosqlite:///{db}",
        "LOOM_LOCAL_MODELS": "off",
        "LOOM_DATA_DIR": str(db.parent),
        # The MCP test servers listen on loopback, which the URL guard refuses by default.
        "LOOM_MCP_ALLOW": "127.0.0.0/8,::1",
    }


@pytest.fixture(scope="session")
def loom_server(loom_env) -> Iterator[ThreadedServer]:
    with run_loom(loom_env) as server:
        yield server


@pytest.fixture
def client(loom_server, upstream) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{loom_server.url}/v1", api_key="x", max_retries=0)


@pytest.fixture
def aclient(loom_server, upstream) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{loom_server.url}/v1", api_key="x", max_retries=0)
