"""The long-lived objects a running Loom holds, built once in the app's lifespan."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from loom.config import Settings
from loom.engine.background import BackgroundRunner
from loom.engine.event_hub import EventHub
from loom.engine.replica import Replica
from loom.engine.turn_runner import TurnRunner
from loom.inference.registry import ModelRegistry
from loom.rag.retrieval import Retrieval
from loom.rag.service import RagServices
from loom.security.keys import KeyRing
from loom.security.url_guard import UrlPolicy
from loom.store import Stores


@dataclass
class Services:
    settings: Settings
    models: ModelRegistry
    stores: Stores
    # How an event is framed on the wire; the API layer passes it in.
    serialize: Callable[[dict[str, Any]], bytes]
    turns: TurnRunner = field(init=False)  # runs, and admits, the turns of this process
    # Search over vector stores, for the search route and the file_search tool.
    retrieval: Retrieval | None = None
    # Files, vector stores, embeddings and ingestion, for their routes.
    rag: RagServices | None = None
    websockets_open: int = 0  # WebSocket-mode connections, against their configured limit
    keys: KeyRing | None = None  # set by the app once it knows whether auth is on
    url_policy: UrlPolicy = field(init=False)
    hub: EventHub = field(default_factory=EventHub)
    background: BackgroundRunner = field(init=False)
    replica: Replica = field(init=False)

    def __post_init__(self) -> None:
        self.turns = TurnRunner(self.settings.max_inflight_turns)
        self.url_policy = UrlPolicy(self.settings.mcp_guard)
        self.background = BackgroundRunner(
            self.settings,
            self.models,
            self.stores,
            self.serialize,
            self.hub,
            replica_id=f"replica_{uuid.uuid4().hex[:12]}",
            url_policy=self.url_policy,
            searcher=self.retrieval,
        )
        self.replica = Replica(self.background, self.settings.db_url)

    async def start(self) -> None:
        await self.replica.start()

    async def aclose(self) -> None:
        """Drain: background runs and the turns still running (a stream whose client left,
        a request uvicorn gave up on) get the grace period together; then background work
        is settled (or goes back to the queue) and the other turns end `failed`."""
        grace = self.settings.shutdown_grace
        await asyncio.gather(self.replica.drain(grace), self.turns.aclose(timeout=grace))
        await self.replica.aclose()
        if self.rag is not None:
            await self.rag.aclose()
        await self.models.aclose()
        await self.stores.db.close()
