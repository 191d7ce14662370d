"""The narrow interface every model backend implements.

A provider speaks OpenAI chat-completions as plain dicts: it receives a request body whose
`model` is already the provider's own model name, and yields chunk dicts exactly as an
OpenAI-compatible server streams them. It knows nothing of Responses, storage or tools.

Three abilities are optional, looked up with `getattr` by the engine: `async
context_window(model) -> int | None` (for `truncation`), `async count_tokens(body) -> int`
(the prompt tokens of a chat body, by the model's own tokenizer) and `check_request(body)`
(raise InvalidRequestError, before anything runs, for a field the provider cannot honor).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol, runtime_checkable

Json = dict[str, Any]


@runtime_checkable
class Provider(Protocol):
    name: str
    # Where requests go; record/replay keys are built from its path.
    base_url: str

    async def list_models(self) -> list[str] | None:
        """The model names this provider serves, or None when it cannot tell."""

    async def chat(self, body: Json) -> Json:
        """A non-streaming chat completion (an OpenAI `ChatCompletion` dict)."""

    def stream_chat(self, body: Json) -> AsyncIterator[Json]:
        """Stream `ChatCompletionChunk` dicts. Errors before the first chunk raise
        `UpstreamError`; so do errors after it."""

    async def embed(self, body: Json) -> Json:
        """An embeddings request (an OpenAI `CreateEmbeddingResponse` dict)."""

    async def aclose(self) -> None: ...
