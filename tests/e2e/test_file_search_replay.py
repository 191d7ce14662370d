"""Replay real gpt-4o file_search exchanges through Loom.

The shared recordings (`shared/recordings/responses-2025-10/`) hold what another server sent
gpt-4o while its file_search tests ran, and what gpt-4o answered: the first call offering
`knowledge_search`, the model's searches, the follow-up carrying the hits as tool output,
the cited answer, and the `text-embedding-3-small` calls for the documents and the queries.

Here each recorded test is run again: the same documents (their text is in the recorded
tool outputs and embedding inputs) go into a Loom vector store embedded by the replaying
upstream with the recorded vectors, and the same question goes through the `openai` SDK.
The upstream answers a chat request only if it matches a recorded one in roles, texts, tool
calls and tool names (tests/support/upstream.py `request_signature`; file ids, scores and
the recorder's token counts normalized), so every model call Loom makes, and every tool
output it writes, must be the one the real exchange carried, or the turn fails.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

import openai
import pytest

from tests.support.documents import REPORTS
from tests.support.schemas import validate_response
from tests.support.stream_validator import validate_stream
from tests.support.upstream import Recordings

MODEL = "openai/gpt-4o"
EMBEDDING_MODEL = "openai/text-embedding-3-small"
MARKER = re.compile(r"<\|(file-[A-Za-z0-9]+)\|>")

MAVERICK = "How many experts does the Llama 4 Maverick model have?"


def _eq(key: str, value: str) -> dict:
    return {"type": "eq", "key": key, "value": value}


@dataclass
class Flow:
    docs: dict[str, tuple[str, dict]]
    question: str
    filters: dict | None = None
    stream: bool = False
    searches: int = 1  # file_search_call items the recorded model makes
    cited: set[str] = field(default_factory=set)  # filenames the answer cites


FLOWS = {
    "filter_by_category": Flow(
        REPORTS,
        "Show me all marketing reports",
        _eq("category", "marketing"),
        cited={"us_marketing_q1.txt", "eu_marketing_q1.txt"},
    ),
    "filter_by_region": Flow(
        REPORTS,
        "What are the updates from the US region?",
        _eq("region", "us"),
        cited={"us_marketing_q1.txt", "us_engineering_q2.txt"},
    ),
    "filter_by_date_range": Flow(
        REPORTS,
        "What happened in Q1 2023?",
        {
            "type": "and",
            "filters": [
                {"type": "gte", "key": "date", "value": 1672531200},
                {"type": "lt", "key": "date", "value": 1680307200},
            ],
        },
        cited={"us_marketing_q1.txt", "eu_marketing_q1.txt"},
    ),
    "filter_compound_and": Flow(
        REPORTS,
        "What are the engineering updates from the US?",
        {"type": "and", "filters": [_eq("category", "engineering"), _eq("region", "us")]},
        cited={"us_engineering_q2.txt"},
    ),
    "filter_compound_or": Flow(
        REPORTS,
        "Show me marketing and sales documents",
        {"type": "or", "filters": [_eq("category", "marketing"), _eq("category", "sales")]},
        searches=2,
        cited={"us_marketing_q1.txt", "eu_marketing_q1.txt", "asia_sales_q3.txt"},
    ),
    "streaming_events": Flow(
        REPORTS,
        "What are the marketing updates?",
        stream=True,
        cited={"us_marketing_q1.txt", "eu_marketing_q1.txt"},
    ),
    "non_streaming_file_search": Flow(
        {"test_response_non_streaming_file_search.txt": ("Llama 4 Maverick has 128 experts", {})},
        MAVERICK,
        cited={"test_response_non_streaming_file_search.txt"},
    ),
    "empty_vector_store": Flow({}, MAVERICK),
}


@functools.cache
def recordings() -> Recordings:
    return Recordings()


def dump(obj) -> dict:
    return obj.model_dump(mode="json", exclude_unset=True, by_alias=True)


def vector_store(client: openai.OpenAI, docs: dict) -> tuple[str, dict[str, str]]:
    store = client.vector_stores.create(
        name="replay", extra_body={"embedding_model": EMBEDDING_MODEL}
    )
    ids = {}
    for name, (text, attributes) in docs.items():
        uploaded = client.files.create(file=(name, text.encode()), purpose="assistants")
        attached = client.vector_stores.files.create_and_poll(
            vector_store_id=store.id, file_id=uploaded.id, attributes=attributes or None
        )
        assert attached.status == "completed", attached.last_error
        ids[name] = uploaded.id
    return store.id, ids


def ask(client: openai.OpenAI, stream: bool, **kwargs) -> dict:
    if stream:
        with client.responses.create(model=MODEL, stream=True, **kwargs) as events:
            return validate_stream([dump(e) for e in events])
    response = dump(client.responses.create(model=MODEL, **kwargs))
    validate_response(response)
    return response


def recorded_answer(upstream) -> str:
    """The recorded answer to Loom's last chat request, as replayed (with Loom's ids)."""
    chunks = upstream.recordings.chunks_for([r for r in upstream.requests if "messages" in r][-1])
    assert chunks is not None
    return "".join(
        (c["choices"][0]["delta"].get("content") or "") for c in chunks if c.get("choices")
    )


def check_answer(message: dict, answer: str, file_ids: dict[str, str], cited: set[str]) -> None:
    """The answer is the recorded one, its markers turned into citations of Loom's files."""
    part = message["content"][0]
    assert part["text"] == re.sub(r"\s*<\|file-[A-Za-z0-9]+\|>", "", answer)
    by_id = {file_id: name for name, file_id in file_ids.items()}
    assert [a["file_id"] for a in part["annotations"]] == MARKER.findall(answer)
    assert {by_id[a["file_id"]] for a in part["annotations"]} == cited
    for annotation in part["annotations"]:
        assert annotation["filename"] == by_id[annotation["file_id"]]


@pytest.mark.parametrize("name", list(FLOWS))
def test_replay_recorded_file_search(client, upstream, name):
    flow = FLOWS[name]
    upstream.recordings = recordings()
    store_id, file_ids = vector_store(client, flow.docs)
    tool = {"type": "file_search", "vector_store_ids": [store_id]}
    if flow.filters:
        tool["filters"] = flow.filters
    response = ask(
        client,
        flow.stream,
        input=flow.question,
        tools=[tool],
        include=["file_search_call.results"],
    )
    assert response["status"] == "completed", response.get("error")
    kinds = [item["type"] for item in response["output"]]
    assert kinds == ["file_search_call"] * flow.searches + ["message"]
    for call in response["output"][:-1]:
        assert call["status"] == "completed" and len(call["queries"]) == 1
        assert {r["file_id"] for r in call["results"]} <= set(file_ids.values())
    if not flow.docs:
        assert response["output"][0]["results"] == []
    chat = [r for r in upstream.requests if "messages" in r]
    assert len(chat) == 2  # the search, then the answer: both replayed
    check_answer(response["output"][-1], recorded_answer(upstream), file_ids, flow.cited)


def test_replay_recorded_sequential_searches_over_a_chain(client, upstream):
    """Two turns chained by previous_response_id, each searching once: the second turn's
    request carries the first turn's search and cited answer as the recorded one did."""
    upstream.recordings = recordings()
    text = "The Llama 4 Maverick model has 128 experts in its mixture of experts architecture."
    store_id, file_ids = vector_store(client, {"test_sequential_file_search.txt": (text, {})})
    tools = [{"type": "file_search", "vector_store_ids": [store_id]}]
    first = ask(client, False, input=MAVERICK, tools=tools)
    assert first["status"] == "completed", first.get("error")
    check_answer(
        first["output"][-1],
        recorded_answer(upstream),
        file_ids,
        {"test_sequential_file_search.txt"},
    )
    second = ask(
        client,
        False,
        input="Can you tell me more about the architecture?",
        previous_response_id=first["id"],
        tools=tools,
    )
    assert second["status"] == "completed", second.get("error")
    assert [i["type"] for i in second["output"]] == ["file_search_call", "message"]
    assert len([r for r in upstream.requests if "messages" in r]) == 4
    check_answer(
        second["output"][-1],
        recorded_answer(upstream),
        file_ids,
        {"test_sequential_file_search.txt"},
    )
