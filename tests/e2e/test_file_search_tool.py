"""The file_search tool in `POST /v1/responses`, end to end: the `openai` SDK → Loom under
uvicorn → a scripted upstream model, with real files and vector stores in Loom (SQLite, and
the real PostgreSQL for the chain and conversation round trips)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import openai
import pytest

from tests.conftest import run_loom
from tests.support.documents import REPORTS as DOCS
from tests.support.lifecycle import wait_for
from tests.support.pg import pg_database
from tests.support.schemas import validate_response
from tests.support.stream_validator import validate_stream
from tests.support.upstream import Turn

MODEL = "openai/gpt-4o"
EMBEDDING_MODEL = "openai/text-embedding-3-small"  # served by the test upstream
INCLUDE = ["file_search_call.results"]
SEARCH = ("knowledge_search", {"query": "marketing reports"})


@dataclass
class Library:
    """A Loom with one vector store holding DOCS."""

    client: openai.OpenAI
    url: str
    store_id: str
    file_ids: dict[str, str]  # filename → file id

    def tool(self, **extra) -> dict:
        return {"type": "file_search", "vector_store_ids": [self.store_id], **extra}


def fill_library(url: str) -> Library:
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
    store = client.vector_stores.create(
        name="reports", extra_body={"embedding_model": EMBEDDING_MODEL}
    )
    file_ids = {}
    for name, (text, attributes) in DOCS.items():
        uploaded = client.files.create(file=(name, text.encode()), purpose="assistants")
        attached = client.vector_stores.files.create_and_poll(
            vector_store_id=store.id, file_id=uploaded.id, attributes=attributes
        )
        assert attached.status == "completed", attached.last_error
        file_ids[name] = uploaded.id
    return Library(client, url, store.id, file_ids)


@pytest.fixture(scope="module")
def sqlite_library(loom_server, upstream_server) -> Library:
    return fill_library(loom_server.url)


@pytest.fixture(scope="module")
def postgresql_library(loom_env, upstream_server) -> Iterator[Library]:
    with pg_database() as db_url, run_loom({**loom_env, "LOOM_DB_URL": db_url}) as loom:
        yield fill_library(loom.url)


@pytest.fixture(params=["sqlite", "postgresql"])
def library(request, upstream) -> Library:
    return request.getfixturevalue(f"{request.param}_library")


def dump(obj) -> dict:
    return obj.model_dump(mode="json", exclude_unset=True, by_alias=True)


def create(lib: Library, **kwargs) -> dict:
    data = dump(lib.client.responses.create(model=MODEL, **kwargs))
    validate_response(data)
    return data


def stream(lib: Library, **kwargs) -> tuple[dict, list[dict]]:
    with lib.client.responses.create(model=MODEL, stream=True, **kwargs) as events:
        data = [dump(event) for event in events]
    return validate_stream(data), data


def chat_requests(upstream) -> list[dict]:
    return [r for r in upstream.requests if "messages" in r]


def cited_answer(lib: Library) -> str:
    us, eu = lib.file_ids["us_marketing_q1.txt"], lib.file_ids["eu_marketing_q1.txt"]
    return f"US revenue grew 15% <|{us}|>. Europe grew too <|{eu}|>."


CLEAN_ANSWER = "US revenue grew 15%. Europe grew too."


def _expected_citations(lib: Library) -> list[dict]:
    return [
        {
            "type": "file_citation",
            "file_id": lib.file_ids[name],
            "filename": name,
            "index": CLEAN_ANSWER.index(end) + len(end),
        }
        for name, end in (("us_marketing_q1.txt", "15%"), ("eu_marketing_q1.txt", "too"))
    ]


# -- one search, an answer with citations ------------------------------------------------------


def test_search_results_hidden_without_include(sqlite_library, upstream):
    lib = sqlite_library
    upstream.script(Turn(tool_calls=[SEARCH]), Turn(text=cited_answer(lib)))
    response = create(lib, input="Show me all marketing reports", tools=[lib.tool()])
    assert response["status"] == "completed"
    call, message = response["output"]
    assert call["type"] == "file_search_call" and call["status"] == "completed"
    assert call["queries"] == ["marketing reports"] and call["results"] is None
    assert call["id"].startswith("fs_")
    assert response["tools"][0]["type"] == "file_search"
    assert response["tools"][0]["vector_store_ids"] == [lib.store_id]
    # the answer's markers became citations
    assert message["content"][0]["text"] == CLEAN_ANSWER
    assert message["content"][0]["annotations"] == _expected_citations(lib)

    first, second = chat_requests(upstream)
    assert [t["function"]["name"] for t in first["tools"]] == ["knowledge_search"]
    assert second["messages"][1]["tool_calls"][0]["function"]["name"] == "knowledge_search"
    tool_message = second["messages"][2]
    assert tool_message["role"] == "tool"
    assert tool_message["tool_call_id"] == second["messages"][1]["tool_calls"][0]["id"]
    # every document comes back (no filter, 4 files < max_num_results), with its id and text
    for name, (text, _) in DOCS.items():
        assert f"document_id: {lib.file_ids[name]}, score: " in tool_message["content"]
        assert f"(cite as <|{lib.file_ids[name]}|>)\n{text}\n" in tool_message["content"]
    assert tool_message["content"].startswith("knowledge_search tool found 4 chunks:")

    stored = dump(lib.client.responses.retrieve(response["id"]))
    assert stored["output"] == response["output"]
    with_results = dump(lib.client.responses.retrieve(response["id"], include=INCLUDE))
    assert {r["filename"] for r in with_results["output"][0]["results"]} == set(DOCS)


def test_results_with_include_and_an_attribute_filter(sqlite_library, upstream):
    lib = sqlite_library
    upstream.script(Turn(tool_calls=[SEARCH]), Turn(text="Two reports."))
    marketing = {"type": "eq", "key": "category", "value": "marketing"}
    response = create(
        lib,
        input="Show me all marketing reports",
        tools=[lib.tool(filters=marketing, max_num_results=5)],
        include=INCLUDE,
    )
    call = response["output"][0]
    assert {r["filename"] for r in call["results"]} == {
        "us_marketing_q1.txt",
        "eu_marketing_q1.txt",
    }
    for result in call["results"]:
        text, attributes = DOCS[result["filename"]]
        assert result["file_id"] == lib.file_ids[result["filename"]]
        assert result["text"] == text and result["attributes"] == attributes
        assert 0 <= result["score"] <= 1
    scores = [r["score"] for r in call["results"]]
    assert scores == sorted(scores, reverse=True)
    assert response["tools"][0]["filters"] == marketing
    tool_message = chat_requests(upstream)[1]["messages"][2]["content"]
    assert tool_message.startswith("knowledge_search tool found 2 chunks:")
    assert "asia_sales_q3.txt" not in tool_message and "us_engineering" not in tool_message


@pytest.mark.parametrize("include", [None, INCLUDE])
def test_streaming_search_events(sqlite_library, upstream, include):
    lib = sqlite_library
    upstream.script(Turn(tool_calls=[SEARCH]), Turn(text=cited_answer(lib), chunk_size=2))
    extra = {"include": include} if include else {}
    final, events = stream(lib, input="Show me all marketing reports", tools=[lib.tool()], **extra)
    call, message = final["output"]
    span = [
        e["type"]
        for e in events
        if e.get("item_id") == call["id"] or (e.get("item") or {}).get("id") == call["id"]
    ]
    assert span == [
        "response.output_item.added",
        "response.file_search_call.in_progress",
        "response.file_search_call.searching",
        "response.file_search_call.completed",
        "response.output_item.done",
    ]
    assert (call["results"] is not None) == bool(include)
    added = [e for e in events if e["type"] == "response.output_text.annotation.added"]
    assert [e["annotation"] for e in added] == _expected_citations(lib)
    assert message["content"][0]["text"] == CLEAN_ANSWER
    deltas = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert deltas == CLEAN_ANSWER  # the client never sees a marker


def test_forced_by_tool_choice(sqlite_library, upstream):
    lib = sqlite_library
    upstream.script(Turn(tool_calls=[SEARCH]), Turn(text="Done."))
    response = create(lib, input="hi", tools=[lib.tool()], tool_choice={"type": "file_search"})
    assert response["tool_choice"] == {"type": "file_search"}
    first, second = chat_requests(upstream)
    assert first["tool_choice"] == {"type": "function", "function": {"name": "knowledge_search"}}
    assert second["tool_choice"] == "auto"  # forced once, then free to answer
    assert response["output"][0]["type"] == "file_search_call"


def test_an_empty_store_answers_with_no_hits(sqlite_library, upstream):
    lib = sqlite_library
    empty = lib.client.vector_stores.create(
        name="empty", extra_body={"embedding_model": EMBEDDING_MODEL}
    )
    upstream.script(Turn(tool_calls=[SEARCH]), Turn(text="Nothing found."))
    tool = {"type": "file_search", "vector_store_ids": [empty.id]}
    response = create(lib, input="marketing?", tools=[tool], include=INCLUDE)
    assert response["output"][0]["results"] == []
    tool_message = chat_requests(upstream)[1]["messages"][2]["content"]
    assert tool_message.startswith("knowledge_search tool found 0 chunks:")


# -- round trips -----------------------------------------------------------------------------


def test_chained_turn_reads_the_search_and_the_cited_answer(library, upstream):
    lib = library
    upstream.script(Turn(tool_calls=[SEARCH]), Turn(text=cited_answer(lib)), Turn(text="Sure."))
    first = create(lib, input="Show me all marketing reports", tools=[lib.tool()])
    second = create(
        lib, input="Summarize that.", previous_response_id=first["id"], tools=[lib.tool()]
    )
    assert second["output"][0]["content"][0]["text"] == "Sure."
    _, answered, chained = chat_requests(upstream)
    history = chained["messages"]
    assert [m["role"] for m in history] == ["user", "assistant", "tool", "assistant", "user"]
    # the model reads the same search it read in the first turn, and its own citations
    assert history[1:3] == answered["messages"][1:3]
    assert history[1]["tool_calls"][0]["id"] == first["output"][0]["id"]
    assert history[3]["content"] == cited_answer(lib)
    assert history[4]["content"] == "Summarize that."


def test_conversation_keeps_the_search_items(library, upstream):
    lib = library
    conversation = lib.client.conversations.create()
    upstream.script(Turn(tool_calls=[SEARCH]), Turn(text=cited_answer(lib)), Turn(text="Yes."))
    first = create(
        lib, input="Show me all marketing reports", tools=[lib.tool()], conversation=conversation.id
    )
    call = first["output"][0]
    with httpx.Client(base_url=f"{lib.url}/v1") as http:
        path = f"/conversations/{conversation.id}/items"
        plain = http.get(path, params={"order": "asc"}).json()["data"]
        full = http.get(path, params={"order": "asc", "include[]": INCLUDE}).json()["data"]
        one = http.get(f"{path}/{call['id']}", params={"include[]": INCLUDE}).json()
    assert [i["type"] for i in plain] == ["message", "file_search_call", "message"]
    assert plain[1]["id"] == call["id"] and plain[1]["results"] is None
    assert len(full[1]["results"]) == 4 and one["results"] == full[1]["results"]
    assert plain[2]["content"][0]["annotations"] == _expected_citations(lib)

    create(lib, input="Are you sure?", conversation=conversation.id, tools=[lib.tool()])
    history = chat_requests(upstream)[2]["messages"]
    assert [m["role"] for m in history] == ["user", "assistant", "tool", "assistant", "user"]
    assert "knowledge_search tool found 4 chunks" in history[2]["content"]
    assert history[3]["content"] == cited_answer(lib)


def test_file_search_call_as_input_item(sqlite_library, upstream):
    """A client can hand a search back as input; the model reads it, input_items lists it."""
    lib = sqlite_library
    upstream.script(Turn(tool_calls=[SEARCH]), Turn(text="Found."), Turn(text="Again."))
    first = create(lib, input="find", tools=[lib.tool()], include=INCLUDE)
    call = first["output"][0]
    second = create(lib, input=[{"role": "user", "content": "and?"}, call], tools=[lib.tool()])
    history = chat_requests(upstream)[2]["messages"]
    assert [m["role"] for m in history] == ["user", "assistant", "tool"]
    assert history[2]["content"] == chat_requests(upstream)[1]["messages"][2]["content"]
    items = lib.client.responses.input_items.list(second["id"], order="asc")
    assert [i.type for i in items.data] == ["message", "file_search_call"]
    assert items.data[1].results is None
    shown = lib.client.responses.input_items.list(second["id"], order="asc", include=INCLUDE)
    assert len(shown.data[1].results) == 4


# -- bad input ---------------------------------------------------------------------------------


def _error(lib: Library, **kwargs) -> tuple[int, dict]:
    with pytest.raises(openai.APIStatusError) as info:
        lib.client.responses.create(model=MODEL, input="hi", **kwargs)
    return info.value.status_code, info.value.body


@pytest.mark.parametrize(
    ("tool", "status", "param"),
    [
        ({"type": "file_search"}, 400, "tools[1].vector_store_ids"),
        ({"type": "file_search", "vector_store_ids": []}, 400, "tools[1].vector_store_ids"),
        (
            {"type": "file_search", "vector_store_ids": ["vs_nope"]},
            404,
            "tools[1].vector_store_ids",
        ),
        (
            {"type": "file_search", "vector_store_ids": ["STORE"], "filters": {"type": "near"}},
            400,
            "tools[1].filters.type",
        ),
        (
            {
                "type": "file_search",
                "vector_store_ids": ["STORE"],
                "filters": {"type": "or", "filters": [{"type": "eq", "key": "a", "value": 1}, {}]},
            },
            400,
            "tools[1].filters.filters[1].type",
        ),
    ],
)
def test_bad_tools_name_the_field_and_lose_nothing(sqlite_library, upstream, tool, status, param):
    lib = sqlite_library
    tool = json.loads(json.dumps(tool).replace("STORE", lib.store_id))
    function = {"type": "function", "name": "noop", "parameters": {"type": "object"}}
    conversation = lib.client.conversations.create(items=[{"role": "user", "content": "kept"}])
    code, body = _error(lib, tools=[function, tool], conversation=conversation.id)
    assert code == status
    assert body["param"] == param and body["type"] == "invalid_request_error"
    assert body["message"]
    assert chat_requests(upstream) == []  # refused before the model was called
    items = lib.client.conversations.items.list(conversation.id).data
    assert [i.content[0].text for i in items] == ["kept"]
    assert lib.client.vector_stores.retrieve(lib.store_id).file_counts.completed == len(DOCS)


def test_bad_include_names_the_field(sqlite_library, upstream):
    code, body = _error(sqlite_library, include=["file_search_call.everything"])
    assert code == 400 and body["param"] == "include"


def test_a_blank_query_searches_the_users_question(sqlite_library, upstream):
    lib = sqlite_library
    upstream.script(Turn(tool_calls=[("knowledge_search", {"query": "  "})]), Turn(text="Ok."))
    response = create(lib, input="Show me all marketing reports", tools=[lib.tool()])
    call = response["output"][0]
    assert call["status"] == "completed"
    assert call["queries"] == ["Show me all marketing reports"]
    searched = chat_requests(upstream)[1]["messages"][1]["tool_calls"][0]["function"]
    assert json.loads(searched["arguments"]) == {"query": "Show me all marketing reports"}


WRONG = [None, 0, -1, 1.5, "", "x", True, [], [1], {}, {"a": 1}, [{}], "a" * 5000]


@pytest.mark.parametrize(
    "field", ["vector_store_ids", "filters", "max_num_results", "ranking_options"]
)
def test_wrong_types_in_the_tool_are_4xx_never_500(sqlite_library, upstream, field):
    lib = sqlite_library
    upstream.default = Turn(text="ok")
    with httpx.Client(base_url=f"{lib.url}/v1", timeout=30) as http:
        for value in WRONG:
            tool = lib.tool()
            tool[field] = value
            reply = http.post("/responses", json={"model": MODEL, "input": "hi", "tools": [tool]})
            assert reply.status_code < 500, (field, value, reply.text)
            if reply.status_code >= 400:
                assert reply.json()["error"]["param"].startswith("tools[0]."), reply.text


def test_file_search_in_a_background_response(sqlite_library, upstream):
    lib = sqlite_library
    upstream.script(Turn(tool_calls=[SEARCH]), Turn(text=cited_answer(lib)))
    created = lib.client.responses.create(
        model=MODEL,
        input="Show me all marketing reports",
        tools=[lib.tool()],
        background=True,
    )
    done = wait_for(
        lambda: lib.client.responses.retrieve(created.id, include=INCLUDE),
        lambda r: r.status not in ("queued", "in_progress"),
        what="the background response to end",
    )
    assert done.status == "completed", done.error
    response = dump(done)
    call, message = response["output"]
    assert call["type"] == "file_search_call" and call["status"] == "completed"
    assert {r["filename"] for r in call["results"]} == set(DOCS)
    assert message["content"][0]["annotations"] == _expected_citations(lib)
