"""Loom's persistence: one database (SQLite or PostgreSQL) and a store per resource.

`open_stores(url)` is what the app calls at start-up: it connects, brings the schema up to
date and hands back the stores that the routes and the engine use.
"""

from __future__ import annotations

from dataclasses import dataclass

from loom.store.api_keys import ApiKeyStore
from loom.store.background import BackgroundStore
from loom.store.chat_completions import ChatCompletionStore
from loom.store.conversations import ConversationStore
from loom.store.db import Database
from loom.store.errors import DuplicateIdError
from loom.store.prompts import PromptStore, StaleVersionError, UnknownVersionError
from loom.store.responses import ResponseStore

__all__ = [
    "ApiKeyStore",
    "BackgroundStore",
    "ChatCompletionStore",
    "ConversationStore",
    "Database",
    "DuplicateIdError",
    "PromptStore",
    "ResponseStore",
    "StaleVersionError",
    "Stores",
    "UnknownVersionError",
    "open_stores",
]


@dataclass(frozen=True)
class Stores:
    db: Database
    chat_completions: ChatCompletionStore
    responses: ResponseStore
    conversations: ConversationStore
    api_keys: ApiKeyStore
    prompts: PromptStore
    background: BackgroundStore

    @classmethod
    def on(cls, db: Database) -> Stores:
        return cls(
            db,
            ChatCompletionStore(db),
            ResponseStore(db),
            ConversationStore(db),
            ApiKeyStore(db),
            PromptStore(db),
            BackgroundStore(db),
        )

    async def close(self) -> None:
        await self.db.close()


async def open_stores(url: str) -> Stores:
    """Connect to `url`, apply pending migrations, and return the stores."""
    db = await Database.connect(url)
    try:
        await db.migrate()
    except BaseException:
        await db.close()
        raise
    return Stores.on(db)
