"""The `local` provider: GGUF models run in-process by llama.cpp, e.g. `local/smollm2-135m`.

This is what lets `loom serve` answer with nothing configured. llama.cpp blocks and is not
thread-safe, so each model owns one worker thread: requests for a model take turns in arrival
order behind an asyncio lock, and each piece of text crosses back to the event loop as soon
as it is generated, so streaming is real and the loop stays free for other requests. When a
consumer stops reading (a client disconnect), a flag stops the worker before its next token
and the next request gets the model. Each model loads lazily, once, on first use.

Tools and `response_format` work by grammar-constrained decoding (see `grammar`); a
tool call streams as OpenAI's do: a chunk with the call's id and name, chunks with pieces
of its JSON arguments, then finish_reason "tool_calls".
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import aclosing
from pathlib import Path

from loom.config import ConfigError, LocalModelSettings
from loom.errors import InvalidRequestError, LoomError, NotFoundError, UpstreamError
from loom.inference.base import Json
from loom.inference.local.files import model_file
from loom.inference.local.request import GenerationRequest, check_fields, parse_request
from loom.inference.local.worker import CallArguments, CallStart, Finish, LoadedModel, Piece

log = logging.getLogger("loom.inference")


class LocalProvider:
    name = "local"
    base_url = "local://llama.cpp"

    def __init__(self, models: list[LocalModelSettings]):
        """Checks every model file now (raising ConfigError); loads none of them yet."""
        paths: dict[str, Path] = {}
        for settings in models:
            if settings.name in paths:
                raise ConfigError(f"local model '{settings.name}' is configured twice")
            paths[settings.name] = model_file(settings)
        self._slots = {s.name: _ModelSlot(s, paths[s.name]) for s in models}
        self._closed = False

    async def list_models(self) -> list[str] | None:
        return list(self._slots)

    async def context_window(self, model: str) -> int | None:
        slot = self._slots.get(model)
        return slot.settings.n_ctx if slot else None

    async def count_tokens(self, body: Json) -> int:
        """The prompt tokens of a chat body, counted by the model's own tokenizer and chat
        template, on its worker thread (loading the model if need be)."""
        slot = self._slot(body.get("model"))
        request = parse_request(body)
        model = await slot.model()
        tokens = await asyncio.get_running_loop().run_in_executor(
            slot.executor, model.prompt_tokens, request.messages
        )
        return len(tokens)

    def check_request(self, body: Json) -> None:
        """Refuse, before anything runs, a field this provider cannot honor."""
        check_fields(body)

    async def stream_chat(self, body: Json) -> AsyncIterator[Json]:
        slot = self._slot(body.get("model"))
        request = parse_request(body)
        chunk_id = f"chatcmpl-{uuid.uuid4().hex}"
        created = int(time.time())

        def chunk(choices: list[Json], **extra: object) -> Json:
            return {
                "id": chunk_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": slot.settings.name,
                "choices": choices,
                **extra,
            }

        def choice(delta: Json, finish_reason: str | None = None) -> Json:
            return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}

        role = {"role": "assistant"}
        async with aclosing(slot.run(request)) as items:
            async for item in items:
                if isinstance(item, str):
                    yield chunk([choice({**role, "content": item})])
                elif isinstance(item, CallArguments):
                    call = {"index": 0, "function": {"arguments": item.text}}
                    yield chunk([choice({"tool_calls": [call]})])
                elif isinstance(item, CallStart):
                    call = {
                        "index": 0,
                        "id": f"call_{uuid.uuid4().hex[:24]}",
                        "type": "function",
                        "function": {"name": item.name, "arguments": ""},
                    }
                    yield chunk([choice({**role, "content": None, "tool_calls": [call]})])
                else:
                    if role:  # nothing was generated; still say who speaks
                        yield chunk([choice({**role, "content": ""})])
                    yield chunk([choice({}, item.reason)])
                    if request.include_usage:
                        yield chunk([], usage=_usage(item))
                    continue
                role = {}

    async def chat(self, body: Json) -> Json:
        """The streaming path, consumed: the same generation, returned as one ChatCompletion."""
        check_fields(body)  # before its stream options are replaced
        body = {**body, "stream": True, "stream_options": {"include_usage": True}}
        first: Json | None = None
        texts: list[str] = []
        calls: list[Json] = []
        finish_reason = usage = None
        async for chunk in self.stream_chat(body):
            first = first or chunk
            for c in chunk["choices"]:
                texts.append(c["delta"].get("content") or "")
                for call in c["delta"].get("tool_calls") or ():
                    if "id" in call:
                        calls.append({k: call[k] for k in ("id", "type")} | {"arguments": []})
                        calls[-1]["name"] = call["function"]["name"]
                    calls[-1]["arguments"].append(call["function"]["arguments"])
                finish_reason = c["finish_reason"] or finish_reason
            usage = chunk.get("usage") or usage
        assert first is not None  # stream_chat always ends with a finish and a usage chunk
        message: Json = {"role": "assistant", "content": "".join(texts), "refusal": None}
        if calls:
            message["content"] = None
            message["tool_calls"] = [
                {
                    "id": c["id"],
                    "type": c["type"],
                    "function": {"name": c["name"], "arguments": "".join(c["arguments"])},
                }
                for c in calls
            ]
        return {
            "id": first["id"],
            "object": "chat.completion",
            "created": first["created"],
            "model": first["model"],
            "choices": [
                {"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}
            ],
            "usage": usage,
        }

    async def count_prompt_tokens(self, body: Json) -> int:
        """The exact prompt length of a chat request, by the model's own tokenizer and chat
        template (tool notes included), without generating anything."""
        slot = self._slot(body.get("model"))
        request = parse_request(body)
        model = await slot.model()
        loop = asyncio.get_running_loop()
        tokens = await loop.run_in_executor(slot.executor, model.prompt_tokens, request.messages)
        return len(tokens)

    async def embed(self, body: Json) -> Json:
        model = body.get("model")
        raise InvalidRequestError(
            f"the local model '{model}' does not support embeddings", param="model"
        )

    async def aclose(self) -> None:
        """Stops running generations and frees every loaded model."""
        self._closed = True
        for slot in self._slots.values():
            await slot.close()

    def _slot(self, model: object) -> _ModelSlot:
        if self._closed:
            raise UpstreamError("the local provider is closed")
        slot = self._slots.get(model) if isinstance(model, str) else None
        if slot is None:
            raise NotFoundError(
                f"local model {model!r} is not configured (configured: {', '.join(self._slots)})",
                param="model",
                code="model_not_found",
            )
        return slot


class _ModelSlot:
    """One configured model: its file, its worker thread, its turn lock, its loaded state."""

    def __init__(self, settings: LocalModelSettings, path: Path):
        self.settings = settings
        self.path = path
        self.executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"loom-local-{settings.name}"
        )
        self.turn = asyncio.Lock()  # FIFO: waiting requests get the model in arrival order
        self.running: set[threading.Event] = set()
        self.closed = False
        self._load: asyncio.Future[LoadedModel] | None = None

    async def model(self) -> LoadedModel:
        """The loaded model; the first caller starts loading it on the worker thread."""
        if self._load is None:
            s = self.settings
            self._load = asyncio.get_running_loop().run_in_executor(
                self.executor, LoadedModel, self.path, s.n_ctx, s.n_threads
            )
        try:
            # Shielded: a caller that gives up must not abandon a load others will need.
            return await asyncio.shield(self._load)
        except Exception as exc:
            self._load = None  # let a later request try again
            if isinstance(exc, LoomError):
                raise
            raise UpstreamError(
                f"local model '{self.settings.name}' failed to load from {self.path}: {exc}"
            ) from None

    async def run(self, request: GenerationRequest) -> AsyncIterator[Piece | Finish]:
        """Pieces of the reply as the worker thread produces them, then one Finish."""
        async with self.turn:
            if self.closed:
                raise UpstreamError(f"local model '{self.settings.name}' has been shut down")
            model = await self.model()
            loop = asyncio.get_running_loop()
            queue: asyncio.Queue[Piece | Finish | BaseException] = asyncio.Queue()
            cancel = threading.Event()

            def post(item: Piece | Finish | BaseException) -> None:
                try:
                    loop.call_soon_threadsafe(queue.put_nowait, item)
                except RuntimeError:  # the event loop is closed: nobody is listening
                    cancel.set()

            def job() -> None:
                if cancel.is_set():
                    return
                try:
                    result: Finish | BaseException = model.generate(request, cancel, post)
                except BaseException as exc:
                    result = exc
                if isinstance(result, Finish) and result.reason == "cancelled":
                    log.debug(
                        "local model %s: generation cancelled after %d tokens",
                        self.settings.name,
                        result.completion_tokens,
                    )
                post(result)

            self.running.add(cancel)
            try:
                self.executor.submit(job)
                while True:
                    item = await queue.get()
                    if isinstance(item, BaseException):
                        raise self._error(item)
                    if isinstance(item, Finish) and item.reason == "cancelled":
                        # Only aclose() cancels a generation whose consumer is still reading.
                        raise UpstreamError(
                            f"local model '{self.settings.name}' was shut down mid-generation"
                        )
                    yield item
                    if isinstance(item, Finish):
                        return
            finally:
                # On a normal end this is a no-op. On an early close the worker stops before
                # its next token; the turn passes on at once, and since the executor has one
                # thread, the next job runs only after this one has returned.
                cancel.set()
                self.running.discard(cancel)

    def _error(self, exc: BaseException) -> LoomError:
        if isinstance(exc, LoomError):
            return exc
        return UpstreamError(
            f"local model '{self.settings.name}' failed: {type(exc).__name__}: {exc}"
        )

    async def close(self) -> None:
        self.closed = True
        for cancel in list(self.running):
            cancel.set()
        load, self._load = self._load, None
        try:
            if load is not None:
                model = await load
                await asyncio.get_running_loop().run_in_executor(self.executor, model.close)
        except Exception:
            pass  # a model that failed to load has nothing to free
        finally:
            self.executor.shutdown(wait=False)


def _usage(finish: Finish) -> Json:
    return {
        "prompt_tokens": finish.prompt_tokens,
        "completion_tokens": finish.completion_tokens,
        "total_tokens": finish.prompt_tokens + finish.completion_tokens,
    }
