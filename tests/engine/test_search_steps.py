"""The agent loop with a file_search tool, driven without a server: a scripted provider
and a fake retrieval stand in for the model and `loom.rag.retrieval.Retrieval`. The e2e
tests (tests/e2e/test_file_search_tool.py) run the same through HTTP with the real ones."""

from __future__ import annotations

import asyncio
import copy
import json
from typing import Any

import pytest

from loom.engine.loop import Turn, run_turn
from loom.engine.request import CreateResponse, response_skeleton
from loom.engine.search_steps import SearchContext
from loom.errors import NotFoundError
from loom.inference.registry import ResolvedModel
from loom.tools.toolset import build_toolset
from tests.support.stream_validator import validate_stream
from tests.support.upstream import Turn as Script
from tests.support.upstream import turn_chunks

HITS = [
    {
        "file_id": "file-us",
        "filename": "us.txt",
        "score": 0.9,
        "attributes": {"region": "us"},
        "content": [{"type": "text", "text": "US revenue grew 15%."}],
    },
    {
        "file_id": "file-eu",
        "filename": "eu.txt",
        "score": 0.4,
        "attributes": {"region": "eu"},
        "content": [{"type": "text", "text": "EU grew strongly."}],
    },
]


class ScriptedProvider:
    name = "scripted"
    base_url = "scripted://"

    def __init__(self, *turns: Script):
        self.turns = list(turns)
        self.bodies: list[dict[str, Any]] = []

    async def stream_chat(self, body):
        self.bodies.append(copy.deepcopy(body))
        for chunk in turn_chunks(self.turns.pop(0), body["model"], True):
            yield chunk


class FakeSearcher:
    def __init__(self, fail: bool | str = False):
        self.calls: list[tuple] = []
        self.fail = fail

    async def require_vector_stores(self, owner, ids):
        return None

    async def search(self, owner, ids, query, **options):
        self.calls.append((owner, ids, query, options))
        if self.fail == "crash":
            raise RuntimeError("the index is broken")
        if self.fail:
            raise NotFoundError("Vector store with id 'vs_1' not found.", param="vector_store_ids")
        return copy.deepcopy(HITS)


def _turn(provider, searcher, include=False, filters=None) -> Turn:
    tool = {"type": "file_search", "vector_store_ids": ["vs_1"], "max_num_results": 5}
    if filters:
        tool["filters"] = filters
    toolset = build_toolset([tool], None)
    req = CreateResponse(model="scripted/m", input="How did revenue do?", tools=[tool])
    response = response_skeleton(
        req, response_id="resp_1", created_at=0, tools=toolset.echo, tool_choice="auto"
    )
    return Turn(
        response=response,
        model=ResolvedModel(provider, "m"),
        messages=[{"role": "user", "content": "How did revenue do?"}],
        params={},
        toolset=toolset,
        max_tool_calls=None,
        parallel_tool_calls=True,
        search=SearchContext("alice", searcher, include),
    )


def _events(turn: Turn) -> list[dict]:
    async def collect():
        return [copy.deepcopy(e) async for e in run_turn(turn)]

    return asyncio.run(collect())


def _types(events, item_id):
    return [
        e["type"]
        for e in events
        if e.get("item_id") == item_id or (e.get("item") or {}).get("id") == item_id
    ]


ANSWER = "US revenue grew 15% <|file-us|>. Europe too <|file-eu|>."


@pytest.mark.parametrize("include", [False, True])
def test_a_search_then_a_cited_answer(include):
    provider = ScriptedProvider(
        Script(tool_calls=[("knowledge_search", {"query": "revenue"})]), Script(text=ANSWER)
    )
    searcher = FakeSearcher()
    filters = {"type": "eq", "key": "region", "value": "us"}
    events = _events(_turn(provider, searcher, include, filters))
    call, message = events[-1]["response"]["output"]
    assert searcher.calls == [
        (
            "alice",
            ["vs_1"],
            "revenue",
            {"max_num_results": 5, "filters": filters, "score_threshold": None},
        )
    ]
    assert call["type"] == "file_search_call" and call["status"] == "completed"
    assert call["queries"] == ["revenue"]
    # the loop's output keeps the results (they are stored); the events show them on request
    assert [r["file_id"] for r in call["results"]] == ["file-us", "file-eu"]
    done = next(e for e in events if e["type"] == "response.output_item.done")
    assert (done["item"]["results"] is not None) is include
    assert _types(events, call["id"]) == [
        "response.output_item.added",
        "response.file_search_call.in_progress",
        "response.file_search_call.searching",
        "response.file_search_call.completed",
        "response.output_item.done",
    ]
    part = message["content"][0]
    assert part["text"] == "US revenue grew 15%. Europe too."
    assert part["annotations"] == [
        {"type": "file_citation", "file_id": "file-us", "filename": "us.txt", "index": 19},
        {"type": "file_citation", "file_id": "file-eu", "filename": "eu.txt", "index": 31},
    ]
    # the model read the hits as a tool message answering its call
    follow_up = provider.bodies[1]["messages"]
    assert follow_up[1]["tool_calls"][0]["id"] == call["id"]
    assert json.loads(follow_up[1]["tool_calls"][0]["function"]["arguments"]) == {
        "query": "revenue"
    }
    assert follow_up[2]["role"] == "tool" and follow_up[2]["tool_call_id"] == call["id"]
    assert "[1] document_id: file-us, score: 0.9" in follow_up[2]["content"]
    assert "[2] document_id: file-eu" in follow_up[2]["content"]
    if include:
        # with the results shown, the whole stream is checked as the client sees it
        events[-1]["response"]["output"][0] = done["item"]
        validate_stream(events)


def test_parallel_searches_read_as_one_assistant_message_and_a_failed_search():
    provider = ScriptedProvider(
        Script(tool_calls=[("knowledge_search", {"query": "a"}), ("knowledge_search", {"q": 1})]),
        Script(text="done"),
    )
    events = _events(_turn(provider, FakeSearcher(), include=True))
    first, second, _ = events[-1]["response"]["output"]
    assert first["status"] == "completed" and second["status"] == "failed"
    assert second["queries"] == [] and second["results"] is None
    assert "response.file_search_call.completed" not in _types(events, second["id"])
    roles = [m["role"] for m in provider.bodies[1]["messages"]]
    assert roles == ["user", "assistant", "tool", "tool"]
    assert len(provider.bodies[1]["messages"][1]["tool_calls"]) == 2
    assert "failed" in provider.bodies[1]["messages"][3]["content"]
    validate_stream(events)


@pytest.mark.parametrize("fail", [True, "crash"])
def test_a_search_the_store_refuses_fails_the_item_not_the_turn(fail):
    provider = ScriptedProvider(
        Script(tool_calls=[("knowledge_search", {"query": "a"})]), Script(text="sorry")
    )
    events = _events(_turn(provider, FakeSearcher(fail=fail), include=True))
    call, message = events[-1]["response"]["output"]
    assert events[-1]["type"] == "response.completed"
    assert call["status"] == "failed" and message["content"][0]["text"] == "sorry"
    validate_stream(events)
