"""The long-lived objects a running Loom holds, built once in the app's lifespan."""

from __future__ import annotations

from dataclasses import dataclass, field

from loom.config import Settings
from loom.engine.turn_runner import TurnRunner
from loom.inference.registry import ModelRegistry
from loom.security.keys import KeyRing
from loom.security.url_guard import UrlPolicy
from loom.store import Stores


@dataclass
class Services:
    settings: Settings
    models: ModelRegistry
    stores: Stores
    turns: TurnRunner = field(default_factory=TurnRunner)
    websockets_open: int = 0  # WebSocket-mode connections, against their configured limit
    keys: KeyRing | None = None  # set by the app once it knows whether auth is on
    url_policy: UrlPolicy = field(init=False)

    def __post_init__(self) -> None:
        self.url_policy = UrlPolicy(self.settings.mcp_guard)

    async def aclose(self) -> None:
        await self.turns.aclose()
        await self.models.aclose()
        await self.stores.db.close()
