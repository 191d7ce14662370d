"""Engine tests run `run_turn` and the turn runner in the test's own event loop: no HTTP
server, a `loom.testing.ScriptedProvider` as the model, `InMemoryMcp` as MCP servers, and a
real SQLite store in a temporary directory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from loom.config import McpGuardSettings, Settings
from loom.engine.events import Event
from loom.engine.loop import run_turn
from loom.engine.request import CreateResponse
from loom.engine.turn_setup import PreparedTurn, prepare_turn
from loom.inference.registry import ModelRegistry
from loom.security.url_guard import UrlPolicy
from loom.store import Stores, open_stores
from loom.testing import InMemoryMcp, ScriptedProvider

OWNER = "engine-tests"


@pytest.fixture
async def stores(tmp_path) -> AsyncIterator[Stores]:
    opened = await open_stores(f"sqlite+aiosqlite:///{tmp_path / 'loom.db'}")
    yield opened
    await opened.close()


async def prepare(
    stores: Stores,
    provider: ScriptedProvider,
    body: dict[str, Any],
    *,
    mcp: InMemoryMcp | None = None,
    max_tool_iterations: int = 10,
) -> PreparedTurn:
    """What `POST /v1/responses` does before running the turn."""
    request = CreateResponse.model_validate({"model": f"{provider.name}/m", **body})
    prepared = await prepare_turn(
        request,
        owner=OWNER,
        settings=Settings(local_models=[], max_tool_iterations=max_tool_iterations),
        models=ModelRegistry([provider]),
        stores=stores,
        url_policy=UrlPolicy(McpGuardSettings()),  # `.invalid` names: in-memory servers
    )
    if mcp is not None:
        prepared.turn.connect_mcp = mcp
    return prepared


def on_the_wire(event: Event) -> Event:
    """The event as a client receives it: serialized when it is yielded, not later."""
    return orjson.loads(orjson.dumps(event))


async def all_events(prepared: PreparedTurn) -> list[Event]:
    return [on_the_wire(event) async for event in run_turn(prepared.turn)]


def mcp_tool(label: str, require_approval: Any = "never") -> dict[str, Any]:
    return {
        "type": "mcp",
        "server_label": label,
        "server_url": f"http://{label}.invalid/mcp",
        "require_approval": require_approval,
    }
