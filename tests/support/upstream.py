"""A real OpenAI-protocol upstream for tests: scripted turns, or replayed recordings.

It runs under uvicorn on loopback (see servers.py) and speaks `/v1/chat/completions`
(streaming and not), `/v1/embeddings` and `/v1/models`, so Loom talks to it exactly as it
talks to OpenAI, vLLM or Ollama. Every request body it receives is kept for assertions.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import re
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from tests.support.shared import SHARED_RECORDINGS, require_shared

_ids = itertools.count(1)


@dataclass
class Turn:
    """One scripted model answer."""

    text: str = ""
    tool_calls: list[tuple[str, Any]] = field(default_factory=list)
    custom_calls: list[tuple[str, str]] = field(default_factory=list)  # native: name, input
    reasoning: str = ""
    reasoning_details: list[dict[str, Any]] = field(default_factory=list)  # OpenRouter's form
    finish_reason: str | None = None
    prompt_tokens: int = 11
    completion_tokens: int = 7
    status: int | None = None  # answer with this HTTP error instead
    retry_after: str | None = None  # the Retry-After header sent with `status`
    fail_after: int | None = None  # break the stream after this many chunks
    fail_mode: str = "disconnect"  # or "error_event", or "garbage" (a chunk that is not JSON)
    delay: float = 0.0  # seconds before each chunk
    chunk_size: int = 1  # words per text delta
    # Misbehaviour on purpose: after `stall_after` chunks (0: before the first one, or
    # before a non-streamed answer), send nothing for `stall` seconds. The wait ends
    # early when the client hangs up, as the request is then cancelled.
    stall_after: int | None = None
    stall: float = 60.0
    # After `hold_after` chunks, wait until the test sets `hold` (an asyncio.Event, set
    # from the test's thread with `loop.call_soon_threadsafe(hold.set)`).
    hold_after: int | None = None
    hold: asyncio.Event | None = None
    service_tier: str | None = None  # the tier the upstream reports having used
    cached_tokens: int = 0  # reported in usage.prompt_tokens_details


def _text_pieces(text: str, words: int) -> list[str]:
    parts = text.split(" ")
    pieces = [" ".join(parts[i : i + words]) for i in range(0, len(parts), words)]
    return [p if i == 0 else " " + p for i, p in enumerate(pieces)] if text else []


def _logprobs(piece: str, top: int) -> dict[str, Any]:
    """Made-up but well-formed logprobs for one text delta, as OpenAI sends them."""
    token = {"token": piece, "bytes": list(piece.encode()), "logprob": -0.25}
    alternatives = [
        {"token": f"alt{i}", "bytes": list(f"alt{i}".encode()), "logprob": -1.0 - i}
        for i in range(top)
    ]
    return {"content": [{**token, "top_logprobs": alternatives}], "refusal": None}


def turn_chunks(
    turn: Turn, model: str, include_usage: bool, top_logprobs: int | None = None
) -> list[dict[str, Any]]:
    """`top_logprobs` not None: the request asked for logprobs, with that many alternatives."""
    cid = f"chatcmpl-fake{next(_ids)}"

    def chunk(
        delta: dict[str, Any], finish: str | None = None, logprobs: Any = None
    ) -> dict[str, Any]:
        out = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": 1700000000,
            "model": model,
            "choices": [
                {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": logprobs}
            ],
        }
        if turn.service_tier:
            out["service_tier"] = turn.service_tier
        return out

    def text_chunk(piece: str) -> dict[str, Any]:
        logprobs = _logprobs(piece, top_logprobs) if top_logprobs is not None else None
        return chunk({"content": piece}, logprobs=logprobs)

    chunks = [chunk({"role": "assistant", "content": ""})]
    chunks += [chunk({"reasoning_content": p}) for p in _text_pieces(turn.reasoning, 1)]
    chunks += [chunk({"reasoning_details": [d]}) for d in turn.reasoning_details]
    chunks += [text_chunk(p) for p in _text_pieces(turn.text, turn.chunk_size)]
    for index, (name, args) in enumerate(turn.tool_calls):
        arguments = args if isinstance(args, str) else json.dumps(args)
        call_id = f"call_{hashlib.sha1(f'{cid}{index}'.encode()).hexdigest()[:12]}"
        chunks.append(
            chunk(
                {
                    "tool_calls": [
                        {
                            "index": index,
                            "id": call_id,
                            "type": "function",
                            "function": {"name": name, "arguments": ""},
                        }
                    ]
                }
            )
        )
        half = len(arguments) // 2
        for piece in (arguments[:half], arguments[half:]):
            chunks.append(
                chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
            )
    for offset, (name, text) in enumerate(turn.custom_calls):
        index = len(turn.tool_calls) + offset
        call_id = f"call_{hashlib.sha1(f'{cid}{index}'.encode()).hexdigest()[:12]}"
        start = {"index": index, "id": call_id, "type": "custom"}
        chunks.append(chunk({"tool_calls": [{**start, "custom": {"name": name, "input": ""}}]}))
        half = len(text) // 2
        for piece in (text[:half], text[half:]):
            chunks.append(chunk({"tool_calls": [{"index": index, "custom": {"input": piece}}]}))
    calls = turn.tool_calls or turn.custom_calls
    finish = turn.finish_reason or ("tool_calls" if calls else "stop")
    chunks.append(chunk({}, finish))
    if include_usage:
        chunks.append(
            {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": 1700000000,
                "model": model,
                "choices": [],
                "usage": {
                    "prompt_tokens": turn.prompt_tokens,
                    "completion_tokens": turn.completion_tokens,
                    "total_tokens": turn.prompt_tokens + turn.completion_tokens,
                    "prompt_tokens_details": {"cached_tokens": turn.cached_tokens},
                },
            }
        )
    return chunks


def fold_chunks(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    """The non-streaming ChatCompletion that a list of chunks adds up to."""
    content, reasoning, calls, finish, usage = [], [], {}, "stop", None
    for c in chunks:
        usage = c.get("usage") or usage
        for choice in c.get("choices") or []:
            delta = choice.get("delta") or {}
            content.append(delta.get("content") or "")
            reasoning.append(delta.get("reasoning_content") or "")
            for call in delta.get("tool_calls") or []:
                slot = calls.setdefault(
                    call["index"],
                    {"id": None, "type": "function", "function": {"name": "", "arguments": ""}},
                )
                slot["id"] = call.get("id") or slot["id"]
                fn = call.get("function") or {}
                slot["function"]["name"] += fn.get("name") or ""
                slot["function"]["arguments"] += fn.get("arguments") or ""
            finish = choice.get("finish_reason") or finish
    message: dict[str, Any] = {"role": "assistant", "content": "".join(content) or None}
    if "".join(reasoning):
        message["reasoning_content"] = "".join(reasoning)
    if calls:
        message["tool_calls"] = [calls[i] for i in sorted(calls)]
    tier = {"service_tier": chunks[0]["service_tier"]} if "service_tier" in chunks[0] else {}
    return {
        **tier,
        "id": chunks[0]["id"],
        "object": "chat.completion",
        "created": chunks[0]["created"],
        "model": chunks[0]["model"],
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
        "usage": usage,
    }


# -- replaying the shared recordings ------------------------------------------------------


def _text_of(content: Any) -> str:
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content or ""


# What differs between the recording server's file_search tool output and Loom's for the
# same documents and the same search, and says nothing about the exchange:
# - file ids are minted by each server: they become F0, F1, ... in order of appearance;
# - scores come from each server's ranking: only their presence is kept;
# - the recording server added its chunker's token counts to the attributes it showed.
FILE_ID = re.compile(r"\bfile-[A-Za-z0-9]+")
_SCORE = re.compile(r"(document_id: F\d+, score: )[-+.\deE]+")
_TOKEN_COUNTS = re.compile(r", 'token_count': [\d.]+, 'metadata_token_count': [\d.]+")


def file_ids_in(body: dict[str, Any]) -> list[str]:
    """The file ids a chat request mentions, in order of first appearance."""
    seen: dict[str, None] = {}
    for m in body.get("messages", []):
        for file_id in FILE_ID.findall(_text_of(m.get("content"))):
            seen.setdefault(file_id)
    return list(seen)


def _normalized(text: str, ids: dict[str, int]) -> str:
    text = FILE_ID.sub(lambda m: f"F{ids[m.group(0)]}", text)
    return _TOKEN_COUNTS.sub("", _SCORE.sub(r"\1S", text))


def request_signature(body: dict[str, Any]) -> str:
    """The meaningful parts of a chat request: roles, texts, tool calls and outputs, tools."""
    ids = {file_id: n for n, file_id in enumerate(file_ids_in(body))}
    messages = []
    for m in body.get("messages", []):
        calls = [
            (c["function"]["name"], json.loads(c["function"]["arguments"] or "{}"))
            for c in m.get("tool_calls") or []
        ]
        messages.append((m["role"], _normalized(_text_of(m.get("content")).strip(), ids), calls))
    tools = sorted(t["function"]["name"] for t in body.get("tools") or [])
    return json.dumps([messages, tools], sort_keys=True)


def _open_bracket(text: str) -> bool:
    """Whether the text ends inside a `<...>` (maybe a marker whose id follows)."""
    return text.rfind("<") > text.rfind(">")


def with_file_ids(chunks: list[dict[str, Any]], mapping: dict[str, str]) -> list[dict[str, Any]]:
    """Recorded chunks with the recording server's file ids replaced by the replaying
    server's (the model cites what it was shown). A `<|file-id|>` marker split over several
    chunks is first joined into one chunk."""
    if not mapping:
        return chunks

    def swap(text: str) -> str:
        return FILE_ID.sub(lambda m: mapping.get(m.group(0), m.group(0)), text)

    out: list[dict[str, Any]] = []
    pending: dict[str, Any] | None = None
    for chunk in chunks:
        choices = chunk.get("choices") or []
        content = choices[0].get("delta", {}).get("content") if choices else None
        if pending is not None and content is not None:
            delta = pending["choices"][0]["delta"]
            delta["content"] += content
            if not _open_bracket(delta["content"]):
                delta["content"] = swap(delta["content"])
                out.append(pending)
                pending = None
            continue
        if pending is not None:
            out.append(pending)
            pending = None
        if content is None:
            out.append(chunk)
            continue
        chunk = json.loads(json.dumps(chunk))
        delta = chunk["choices"][0]["delta"]
        if _open_bracket(delta["content"]):
            pending = chunk
        else:
            delta["content"] = swap(delta["content"])
            out.append(chunk)
    if pending is not None:
        out.append(pending)
    return out


def _asks_usage(request: dict[str, Any]) -> bool:
    return bool((request["body"].get("stream_options") or {}).get("include_usage"))


def _searches_of(data: dict[str, Any]) -> list[str]:
    """The queries of the knowledge_search calls a recorded answer makes."""
    parts: dict[int, str] = {}
    for chunk in data["response"]["body"]:
        for choice in chunk["__data__"].get("choices") or ():
            for call in (choice.get("delta") or {}).get("tool_calls") or ():
                fn = call.get("function") or {}
                parts[call["index"]] = parts.get(call["index"], "") + (fn.get("arguments") or "")
    queries = []
    for arguments in parts.values():
        try:
            query = json.loads(arguments).get("query")
        except (ValueError, AttributeError):
            continue
        if isinstance(query, str):
            queries.append(query)
    return queries


class Recordings:
    def __init__(self, directory: Path = SHARED_RECORDINGS):
        self.by_signature: dict[str, dict[str, Any]] = {}
        # (embedding model, input text) → the recorded vector
        self.embeddings: dict[tuple[str, str], list[float]] = {}
        candidates: dict[str, list[dict[str, Any]]] = {}
        for path in sorted(require_shared(directory).glob("*.json")):
            data = json.loads(path.read_text())
            request = data.get("request", {})
            if request.get("endpoint") == "/v1/embeddings":
                self._add_embeddings(request["body"], data["response"]["body"]["__data__"])
                continue
            if request.get("endpoint") != "/v1/chat/completions":
                continue
            if not data["response"].get("is_streaming"):
                continue
            candidates.setdefault(request_signature(request["body"]), []).append(data)
        for signature, recorded in candidates.items():
            # Several runs recorded the same request. Prefer the answer whose searches can
            # be replayed (their query embeddings were recorded too), then one that carries
            # usage (Loom always asks for it), then the first.
            self.by_signature[signature] = min(
                recorded,
                key=lambda d: (not self._replayable(d), not _asks_usage(d["request"])),
            )

    def _replayable(self, data: dict[str, Any]) -> bool:
        return all(("text-embedding-3-small", q) in self.embeddings for q in _searches_of(data))

    def _add_embeddings(self, body: dict[str, Any], response: dict[str, Any]) -> None:
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        for entry in response["data"]:
            self.embeddings.setdefault((body["model"], inputs[entry["index"]]), entry["embedding"])

    def chunks_for(self, body: dict[str, Any]) -> list[dict[str, Any]] | None:
        data = self.by_signature.get(request_signature(body))
        if data is None:
            return None
        chunks = [c["__data__"] for c in data["response"]["body"]]
        recorded_ids = file_ids_in(data["request"]["body"])
        mapping = dict(zip(recorded_ids, file_ids_in(body), strict=False))
        return with_file_ids(chunks, mapping)


# -- the server -----------------------------------------------------------------------------


class FakeUpstream:
    def __init__(
        self,
        models: tuple[str, ...] = (
            "gpt-4o",
            "gpt-4o-mini",
            "text-embedding-3-small",
            "tiny-window",
        ),
        context_windows: dict[str, int] | None = None,
    ):
        self.models = list(models)
        # What /models says of each model's context window (as vLLM, OpenRouter... do).
        self.context_windows = (
            {"tiny-window": 256} if context_windows is None else dict(context_windows)
        )
        self.turns: deque[Turn] = deque()
        self.default: Turn | None = None
        self.recordings: Recordings | None = None
        self.requests: list[dict[str, Any]] = []
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
                Route("/v1/embeddings", self._embeddings, methods=["POST"]),
                Route("/v1/models", self._models, methods=["GET"]),
            ]
        )

    def script(self, *turns: Turn) -> None:
        self.turns.extend(turns)

    def reset(self) -> None:
        self.turns.clear()
        self.requests.clear()
        self.default = None
        self.recordings = None

    async def _models(self, request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "object": "list",
                "data": [
                    {"id": m, "object": "model", "created": 0, "owned_by": "fake"}
                    | (
                        {"context_window": self.context_windows[m]}
                        if m in self.context_windows
                        else {}
                    )
                    for m in self.models
                ],
            }
        )

    async def _embeddings(self, request: Request) -> JSONResponse:
        body = await request.json()
        self.requests.append(body)
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = []
        for i, text in enumerate(inputs):
            if self.recordings is not None:  # replaying: recorded vectors only
                vector = self.recordings.embeddings.get((body["model"], text))
                if vector is None:
                    message = f"no recorded embedding of {text!r} by {body['model']}"
                    error = {"message": message, "type": "not_recorded"}
                    return JSONResponse({"error": error}, status_code=500)
            else:
                digest = hashlib.sha256(str(text).encode()).digest()
                vector = [b / 255.0 for b in digest[:16]]
            data.append({"object": "embedding", "index": i, "embedding": vector})
        return JSONResponse(
            {
                "object": "list",
                "data": data,
                "model": body["model"],
                "usage": {"prompt_tokens": len(inputs), "total_tokens": len(inputs)},
            }
        )

    async def _chat(self, request: Request):
        body = await request.json()
        self.requests.append(body)
        model = body.get("model", "")
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        turn: Turn | None = None
        chunks: list[dict[str, Any]] | None = None
        if self.recordings is not None:
            chunks = self.recordings.chunks_for(body)
            if chunks is None:
                return JSONResponse(
                    {
                        "error": {
                            "message": f"no recording matches {request_signature(body)}",
                            "type": "not_recorded",
                        }
                    },
                    status_code=500,
                )
        else:
            turn = self.turns.popleft() if self.turns else self.default
            if turn is None:
                return JSONResponse(
                    {
                        "error": {
                            "message": "fake upstream: script exhausted",
                            "type": "script_exhausted",
                        }
                    },
                    status_code=500,
                )
            if turn.status:
                headers = {"Retry-After": turn.retry_after} if turn.retry_after else None
                return JSONResponse(
                    {
                        "error": {
                            "message": f"scripted failure {turn.status}",
                            "type": "server_error",
                        }
                    },
                    status_code=turn.status,
                    headers=headers,
                )
            top = (body.get("top_logprobs") or 0) if body.get("logprobs") else None
            chunks = turn_chunks(turn, model, include_usage or not body.get("stream"), top)
        if not body.get("stream"):
            if turn is not None and turn.stall_after is not None:
                await asyncio.sleep(turn.stall)
            return JSONResponse(fold_chunks(chunks))
        return StreamingResponse(self._stream(chunks, turn), media_type="text/event-stream")

    async def _stream(self, chunks: list[dict[str, Any]], turn: Turn | None):
        for n, c in enumerate(chunks):
            if turn is not None and turn.stall_after == n:
                await asyncio.sleep(turn.stall)
            if turn is not None and turn.hold is not None and turn.hold_after == n:
                await turn.hold.wait()
            if turn is not None and turn.fail_after is not None and n == turn.fail_after:
                if turn.fail_mode == "error_event":
                    yield b'data: {"error": {"message": "scripted mid-stream failure"}}\n\n'
                    return
                if turn.fail_mode == "garbage":
                    yield b"data: {this is not json\n\n"
                    return
                raise ConnectionAbortedError("scripted mid-stream disconnect")
            if turn is not None and turn.delay:
                await asyncio.sleep(turn.delay)
            yield b"data: " + json.dumps(c).encode() + b"\n\n"
        yield b"data: [DONE]\n\n"
