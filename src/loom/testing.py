"""A scripted model provider and in-memory MCP tools, for tests of the engine and of apps.

`ScriptedProvider` implements Loom's `Provider` protocol with no network: each chat call
streams the next scripted `Reply` as OpenAI chat-completion chunks, so `run_turn` (or a
whole Loom, through `ModelRegistry`) can be driven exactly, and every request body it
received is kept for assertions. A reply can also fail: before its first chunk, or after
some chunks, as an upstream that breaks off mid-stream does. `release` holds a reply back
until the test says so, to observe a turn while it waits on the model.

`InMemoryMcp` stands in for a turn's MCP servers (`Turn.connect_mcp`): tools are plain
Python functions, and every call is recorded.

    provider = ScriptedProvider(Reply(tool_calls=[("add", {"a": 1})]), Reply(text="2"))
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

from mcp import types

from loom.errors import UpstreamError
from loom.tools.mcp_tools import McpServer

Json = dict[str, Any]

_ids = itertools.count(1)


@dataclass
class Reply:
    """One scripted model answer."""

    text: str = ""
    tool_calls: list[tuple[str, Any]] = field(default_factory=list)  # (name, arguments)
    reasoning: str = ""
    finish_reason: str | None = None  # default: "tool_calls" with calls, else "stop"
    words_per_delta: int = 1
    prompt_tokens: int = 11
    completion_tokens: int = 7
    error: Exception | None = None  # raised instead of (or, with fail_after, during) it
    fail_after: int | None = None  # chunks streamed before `error` is raised
    release: asyncio.Event | None = None  # the reply waits for it before its first chunk


def _pieces(text: str, words: int) -> list[str]:
    parts = text.split(" ")
    pieces = [" ".join(parts[i : i + words]) for i in range(0, len(parts), words)]
    return [p if i == 0 else " " + p for i, p in enumerate(pieces)] if text else []


def reply_chunks(reply: Reply, model: str, include_usage: bool = True) -> list[Json]:
    """The `ChatCompletionChunk` dicts an OpenAI-compatible server would stream."""
    chunk_id = f"chatcmpl-scripted{next(_ids)}"

    def chunk(delta: Json, finish: str | None = None) -> Json:
        return {
            "id": chunk_id,
            "object": "chat.completion.chunk",
            "created": 1700000000,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
        }

    chunks = [chunk({"role": "assistant", "content": ""})]
    chunks += [chunk({"reasoning_content": p}) for p in _pieces(reply.reasoning, 1)]
    chunks += [chunk({"content": p}) for p in _pieces(reply.text, reply.words_per_delta)]
    for index, (name, args) in enumerate(reply.tool_calls):
        arguments = args if isinstance(args, str) else json.dumps(args)
        head = {"index": index, "id": f"call_{chunk_id[-8:]}_{index}", "type": "function"}
        start = {**head, "function": {"name": name, "arguments": ""}}
        chunks.append(chunk({"tool_calls": [start]}))
        half = len(arguments) // 2
        for piece in (arguments[:half], arguments[half:]):
            more = {"index": index, "function": {"arguments": piece}}
            chunks.append(chunk({"tool_calls": [more]}))
    finish = reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")
    chunks.append(chunk({}, finish))
    if include_usage:
        usage = {
            "prompt_tokens": reply.prompt_tokens,
            "completion_tokens": reply.completion_tokens,
            "total_tokens": reply.prompt_tokens + reply.completion_tokens,
        }
        chunks.append({**chunk({}), "choices": [], "usage": usage})
    return chunks


class ScriptedProvider:
    """A `Provider` that answers each chat call with the next scripted reply, in order."""

    def __init__(self, *replies: Reply, name: str = "scripted", models: tuple[str, ...] = ("m",)):
        self.name = name
        self.base_url = f"{name}://"
        self.models = list(models)
        self.replies = list(replies)
        self.requests: list[Json] = []  # every chat body received, in order
        self._called = asyncio.Condition()

    def add(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    async def wait_for_calls(self, count: int) -> None:
        """Return once `count` chat calls have arrived."""
        async with self._called:
            await self._called.wait_for(lambda: len(self.requests) >= count)

    async def _next(self, body: Json) -> Reply:
        async with self._called:
            self.requests.append(body)
            self._called.notify_all()
        if not self.replies:
            raise UpstreamError("the scripted provider has no reply left for this call")
        return self.replies.pop(0)

    async def list_models(self) -> list[str] | None:
        return list(self.models)

    async def stream_chat(self, body: Json) -> AsyncIterator[Json]:
        reply = await self._next(body)
        if reply.release is not None:
            await reply.release.wait()
        if reply.error is not None and reply.fail_after is None:
            raise reply.error
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        for sent, chunk in enumerate(reply_chunks(reply, body.get("model", ""), include_usage)):
            if reply.fail_after is not None and sent == reply.fail_after:
                raise reply.error or UpstreamError("the scripted stream broke off")
            yield chunk

    async def chat(self, body: Json) -> Json:
        reply = await self._next(body)
        if reply.error is not None:
            raise reply.error
        message: Json = {"role": "assistant", "content": reply.text or None}
        if reply.tool_calls:
            message["tool_calls"] = [
                {
                    "id": f"call_scripted_{index}",
                    "type": "function",
                    "function": {
                        "name": name,
                        "arguments": args if isinstance(args, str) else json.dumps(args),
                    },
                }
                for index, (name, args) in enumerate(reply.tool_calls)
            ]
        finish = reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")
        return {
            "id": f"chatcmpl-scripted{next(_ids)}",
            "object": "chat.completion",
            "created": 1700000000,
            "model": body.get("model", ""),
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {
                "prompt_tokens": reply.prompt_tokens,
                "completion_tokens": reply.completion_tokens,
                "total_tokens": reply.prompt_tokens + reply.completion_tokens,
            },
        }

    async def embed(self, body: Json) -> Json:
        raise UpstreamError("the scripted provider does not embed")

    async def aclose(self) -> None:
        return None


ToolFunction = Callable[..., Any]


class InMemoryMcp:
    """MCP servers in memory, by `server_label`: each tool is a function of its arguments
    whose return value becomes the call's text (an exception, a tool error). Pass the
    instance as `Turn.connect_mcp`."""

    def __init__(self, servers: dict[str, dict[str, ToolFunction]]):
        self.servers = servers
        self.calls: list[tuple[str, str, dict[str, Any]]] = []  # (label, tool, arguments)
        self.listings: list[str] = []  # labels, in the order they were listed

    def __call__(self, stack: AsyncExitStack, timeout: float) -> InMemoryMcp:
        return self

    async def list_tools(self, server: McpServer) -> list[types.Tool]:
        self.listings.append(server.label)
        return [
            types.Tool(
                name=name,
                description=(fn.__doc__ or "").strip() or None,
                input_schema={"type": "object", "properties": {}},
            )
            for name, fn in self.servers[server.label].items()
        ]

    async def call_tool(
        self, server: McpServer, name: str, arguments: dict[str, Any]
    ) -> types.CallToolResult:
        self.calls.append((server.label, name, arguments))
        try:
            output = self.servers[server.label][name](**arguments)
        except Exception as exc:
            text = types.TextContent(type="text", text=str(exc))
            return types.CallToolResult(content=[text], is_error=True)
        return types.CallToolResult(content=[types.TextContent(type="text", text=str(output))])
