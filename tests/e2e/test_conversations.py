"""The Conversations API end to end: a real Loom on SQLite and on PostgreSQL, the `openai` SDK.

Covers create / retrieve / update / delete, adding and paging items (no gaps, no repeats,
correct cursors), items of every type round-tripping unchanged, the errors, and that a
page of items is read through the (conversation_id, position) index.

The `conv_client` / `conv_aclient` fixtures here (test_conversation_turns.py imports them)
run each test once against the shared SQLite Loom and once against a Loom on a fresh
PostgreSQL database (one per test module).
"""

from __future__ import annotations

import time
import typing
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from openai.types.conversations import (
    Conversation,
    ConversationDeletedResource,
    ConversationItemList,
)
from openai.types.conversations.conversation_item import ConversationItem
from pydantic import BaseModel

from tests.conftest import run_loom
from tests.support.pg import pg_database
from tests.support.servers import ThreadedServer

# -- one Loom per backend ---------------------------------------------------------------------


@pytest.fixture(scope="module", name="pg_loom")
def pg_loom_fixture(loom_env: dict[str, str]) -> Iterator[ThreadedServer]:
    with pg_database() as url, run_loom({**loom_env, "LOOM_DB_URL": url}) as server:
        yield server


BACKENDS = [pytest.param("sqlite", id="sqlite"), pytest.param("postgresql", id="postgresql")]


@pytest.fixture(params=BACKENDS, name="backend")
def backend_fixture(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(name="loom_url")
def loom_url_fixture(backend: str, request: pytest.FixtureRequest, loom_server, upstream) -> str:
    if backend == "sqlite":
        return loom_server.url
    return request.getfixturevalue("pg_loom").url


@pytest.fixture(name="conv_client")
def conv_client_fixture(
    backend: str, loom_url: str, request: pytest.FixtureRequest
) -> openai.OpenAI:
    if backend == "sqlite":
        return request.getfixturevalue("client")
    return openai.OpenAI(base_url=f"{loom_url}/v1", api_key="x", max_retries=0)


@pytest.fixture(name="conv_aclient")
def conv_aclient_fixture(
    backend: str, loom_url: str, request: pytest.FixtureRequest
) -> openai.AsyncOpenAI:
    if backend == "sqlite":
        return request.getfixturevalue("aclient")
    return openai.AsyncOpenAI(base_url=f"{loom_url}/v1", api_key="x", max_retries=0)


# -- validating against the SDK types -------------------------------------------------------

_ITEM_TYPES: dict[str, type[BaseModel]] = {
    tag: member
    for member in typing.get_args(typing.get_args(ConversationItem)[0])
    for tag in typing.get_args(member.model_fields["type"].annotation)
}


def validate_item(item: dict[str, Any]) -> None:
    """Strict validation against the SDK class for the item's type (the SDK client itself
    builds its objects without validating)."""
    _ITEM_TYPES[item["type"]].model_validate(item)


def validate_list(page: dict[str, Any]) -> None:
    ConversationItemList.model_validate(page)
    for item in page["data"]:
        validate_item(item)


def raw_items_page(client: openai.OpenAI, conv_id: str, **params: Any) -> dict[str, Any]:
    raw = client.conversations.items.with_raw_response.list(conv_id, **params)
    return raw.http_response.json()


def all_items(client: openai.OpenAI, conv_id: str) -> list[dict[str, Any]]:
    """Every item, oldest first, as the raw JSON Loom sent (whole: file search results are
    shown only when included, as OpenAI does)."""
    out: list[dict[str, Any]] = []
    after: Any = openai.omit
    while True:
        page = raw_items_page(
            client,
            conv_id,
            order="asc",
            limit=100,
            after=after,
            include=["file_search_call.results"],
        )
        out.extend(page["data"])
        if not page["has_more"]:
            return out
        after = page["last_id"]


def user_message(text: str, **extra: Any) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": text, **extra}


# Items of every type Loom keeps, fully specified, so that what comes back must be equal.
EVERY_TYPE: list[dict[str, Any]] = [
    {
        "type": "message",
        "id": "msg_system",
        "role": "system",
        "status": "completed",
        "content": [{"type": "input_text", "text": "Be brief."}],
    },
    {
        "type": "message",
        "id": "msg_developer",
        "role": "developer",
        "status": "completed",
        "content": [{"type": "input_text", "text": "Answer in English."}],
    },
    {
        "type": "message",
        "id": "msg_user",
        "role": "user",
        "status": "completed",
        "content": [
            {"type": "input_text", "text": "What is in these?"},
            {"type": "input_image", "image_url": "https://example.com/cat.png", "detail": "high"},
            {"type": "input_image", "file_id": "file-img1", "detail": "auto"},
            {"type": "input_file", "file_id": "file-pdf1", "filename": "report.pdf"},
            {
                "type": "input_file",
                "file_data": "data:application/pdf;base64,JVBERi0=",
                "filename": "inline.pdf",
            },
            {"type": "input_file", "file_url": "https://example.com/paper.pdf"},
        ],
    },
    {
        "type": "message",
        "id": "msg_assistant",
        "role": "assistant",
        "status": "completed",
        "content": [
            {
                "type": "output_text",
                "text": "A cat and a report.",
                "annotations": [
                    {
                        "type": "url_citation",
                        "url": "https://example.com/cat.png",
                        "title": "Cat",
                        "start_index": 2,
                        "end_index": 5,
                    },
                    {
                        "type": "file_citation",
                        "file_id": "file-pdf1",
                        "filename": "report.pdf",
                        "index": 12,
                    },
                ],
                "logprobs": [],
            },
            {"type": "refusal", "refusal": "I will not read the third one."},
        ],
    },
    {
        "type": "function_call",
        "id": "fc_weather",
        "call_id": "call_weather",
        "name": "get_weather",
        "arguments": '{"city": "Paris"}',
        "status": "completed",
    },
    {
        "type": "function_call_output",
        "id": "fco_weather",
        "call_id": "call_weather",
        "output": '{"sky": "clear"}',
        "status": "completed",
    },
    {
        "type": "function_call_output",
        "id": "fco_parts",
        "call_id": "call_parts",
        "output": [{"type": "input_text", "text": "as parts"}],
        "status": "completed",
    },
    {
        "type": "mcp_list_tools",
        "id": "mcpl_wiki",
        "server_label": "wiki",
        "tools": [
            {
                "name": "ask_question",
                "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}},
                "description": "Ask the wiki.",
                "annotations": {"readOnlyHint": True},
            }
        ],
        "error": None,
    },
    {
        "type": "mcp_approval_request",
        "id": "mcpr_ask",
        "server_label": "wiki",
        "name": "ask_question",
        "arguments": '{"q": "why"}',
    },
    {
        "type": "mcp_approval_response",
        "id": "mcpa_ask",
        "approval_request_id": "mcpr_ask",
        "approve": True,
        "reason": "looks safe",
    },
    {
        "type": "mcp_call",
        "id": "mcp_ask",
        "server_label": "wiki",
        "name": "ask_question",
        "arguments": '{"q": "why"}',
        "output": "because",
        "error": None,
        "status": "completed",
        "approval_request_id": "mcpr_ask",
    },
    {
        "type": "file_search_call",
        "id": "fs_docs",
        "queries": ["refund policy"],
        "status": "completed",
        "results": [
            {
                "file_id": "file-policy",
                "filename": "policy.md",
                "score": 0.87,
                "text": "Refunds within 30 days.",
                "attributes": {"team": "support", "version": 2.0, "public": True},
            }
        ],
    },
    {
        "type": "web_search_call",
        "id": "ws_news",
        "status": "completed",
        "action": {"type": "search", "query": "loom release"},
    },
    {
        "type": "reasoning",
        "id": "rs_plan",
        "summary": [{"type": "summary_text", "text": "Plan the answer."}],
        "content": [{"type": "reasoning_text", "text": "First the cat, then the report."}],
        "encrypted_content": None,
        "status": "completed",
    },
]


# -- CRUD -------------------------------------------------------------------------------------


def test_create_retrieve_update_delete(conv_client: openai.OpenAI) -> None:
    before = int(time.time())
    raw = conv_client.conversations.with_raw_response.create(
        items=[user_message("hello")], metadata={"topic": "demo"}
    )
    created = raw.http_response.json()
    Conversation.model_validate(created)
    assert created["object"] == "conversation"
    assert created["id"].startswith("conv_")
    assert isinstance(created["created_at"], int)
    assert before <= created["created_at"] <= int(time.time())
    assert created["metadata"] == {"topic": "demo"}

    conv_id = created["id"]
    fetched = conv_client.conversations.retrieve(conv_id)
    assert fetched.model_dump() == created

    items = all_items(conv_client, conv_id)
    assert len(items) == 1
    assert items[0]["role"] == "user"
    assert items[0]["content"] == [{"type": "input_text", "text": "hello"}]
    assert items[0]["id"].startswith("msg_")

    updated = conv_client.conversations.update(conv_id, metadata={"topic": "other", "n": "2"})
    Conversation.model_validate(updated.model_dump())
    assert updated.metadata == {"topic": "other", "n": "2"}
    assert updated.id == conv_id and updated.created_at == created["created_at"]
    assert conv_client.conversations.retrieve(conv_id).metadata == {"topic": "other", "n": "2"}

    raw_deleted = conv_client.conversations.with_raw_response.delete(conv_id)
    deleted = raw_deleted.http_response.json()
    ConversationDeletedResource.model_validate(deleted)
    assert deleted == {"id": conv_id, "object": "conversation.deleted", "deleted": True}
    with pytest.raises(openai.NotFoundError):
        conv_client.conversations.retrieve(conv_id)
    with pytest.raises(openai.NotFoundError):
        conv_client.conversations.items.list(conv_id)


def test_create_empty_and_clear_metadata(conv_client: openai.OpenAI) -> None:
    conv = conv_client.conversations.create()
    assert conv.metadata == {}
    assert raw_items_page(conv_client, conv.id) == {
        "object": "list",
        "data": [],
        "first_id": None,
        "last_id": None,
        "has_more": False,
    }
    conv_client.conversations.update(conv.id, metadata={"a": "b"})
    cleared = conv_client.conversations.update(conv.id, metadata=None)
    assert cleared.metadata == {}


def test_add_items_returns_the_added_items(conv_client: openai.OpenAI) -> None:
    conv = conv_client.conversations.create(items=[user_message("first")])
    raw = conv_client.conversations.items.with_raw_response.create(
        conv.id,
        items=[user_message("second"), {"role": "assistant", "content": "third"}],
        include=["message.input_image.image_url"],
    )
    added = raw.http_response.json()
    validate_list(added)
    assert [i["content"][0]["text"] for i in added["data"]] == ["second", "third"]
    assert added["data"][1]["content"][0] == {
        "type": "output_text",
        "text": "third",
        "annotations": [],
    }
    assert added["first_id"] == added["data"][0]["id"]
    assert added["last_id"] == added["data"][1]["id"]
    assert added["has_more"] is False

    history = all_items(conv_client, conv.id)
    assert [i["content"][0]["text"] for i in history] == ["first", "second", "third"]
    assert history[1:] == added["data"]
    # The default order is newest first.
    newest = raw_items_page(conv_client, conv.id)
    assert [i["id"] for i in newest["data"]] == [i["id"] for i in reversed(history)]


def test_items_of_every_type_round_trip_unchanged(conv_client: openai.OpenAI) -> None:
    conv = conv_client.conversations.create(items=EVERY_TYPE[:7])
    added = conv_client.conversations.items.with_raw_response.create(
        conv.id, items=EVERY_TYPE[7:]
    ).http_response.json()
    assert added["data"] == EVERY_TYPE[7:]

    stored = all_items(conv_client, conv.id)
    assert stored == EVERY_TYPE
    for item in stored:
        validate_item(item)
        one = conv_client.conversations.items.with_raw_response.retrieve(
            item["id"], conversation_id=conv.id, include=["file_search_call.results"]
        ).http_response.json()
        assert one == item
    # The SDK reads every one of them back as its own type.
    parsed = list(conv_client.conversations.items.list(conv.id, order="asc", limit=100))
    assert [p.type for p in parsed] == [i["type"] for i in EVERY_TYPE]
    assert [p.id for p in parsed] == [i["id"] for i in EVERY_TYPE]


def test_items_get_ids_and_canonical_content(conv_client: openai.OpenAI) -> None:
    conv = conv_client.conversations.create(
        items=[
            {"role": "user", "content": "plain string"},
            {
                "type": "message",
                "role": "developer",
                "content": [{"type": "input_text", "text": "x"}],
            },
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "ok"},
            {
                "role": "user",
                "content": [{"type": "input_image", "image_url": "https://e.com/a.png"}],
            },
        ]
    )
    items = all_items(conv_client, conv.id)
    for item in items:
        validate_item(item)
    prefixes = [i["id"].split("_")[0] for i in items]
    assert prefixes == ["msg", "msg", "fc", "fco", "msg"]
    assert len({i["id"] for i in items}) == 5
    assert items[0]["content"] == [{"type": "input_text", "text": "plain string"}]
    assert items[0]["status"] == "completed"
    assert items[2]["status"] == "completed" and items[3]["status"] == "completed"
    assert items[4]["content"][0]["detail"] == "auto"
    # Ids are stable: reading again gives the same ones.
    assert [i["id"] for i in all_items(conv_client, conv.id)] == [i["id"] for i in items]


def test_delete_item_returns_the_conversation(conv_client: openai.OpenAI) -> None:
    conv = conv_client.conversations.create(
        items=[user_message("a"), user_message("b"), user_message("c")], metadata={"k": "v"}
    )
    ids = [i["id"] for i in all_items(conv_client, conv.id)]
    raw = conv_client.conversations.items.with_raw_response.delete(ids[1], conversation_id=conv.id)
    body = raw.http_response.json()
    Conversation.model_validate(body)
    assert body == conv.model_dump()
    assert [i["id"] for i in all_items(conv_client, conv.id)] == [ids[0], ids[2]]
    # Paging steps over the hole; a cursor at a deleted item is no longer known.
    page = raw_items_page(conv_client, conv.id, order="asc", limit=1, after=ids[0])
    assert [i["id"] for i in page["data"]] == [ids[2]]
    with pytest.raises(openai.NotFoundError):
        conv_client.conversations.items.retrieve(ids[1], conversation_id=conv.id)
    with pytest.raises(openai.NotFoundError):
        conv_client.conversations.items.delete(ids[1], conversation_id=conv.id)
    # Appending after a delete keeps the order.
    conv_client.conversations.items.create(conv.id, items=[user_message("d")])
    texts = [i["content"][0]["text"] for i in all_items(conv_client, conv.id)]
    assert texts == ["a", "c", "d"]


# -- paging -----------------------------------------------------------------------------------


def _walk(client: openai.OpenAI, conv_id: str, limit: int, order: str, expected: list[str]):
    """Page through with `after`, checking every page's envelope against `expected`."""
    seen: list[str] = []
    after: Any = openai.omit
    while True:
        page = raw_items_page(client, conv_id, limit=limit, order=order, after=after)
        ids = [i["id"] for i in page["data"]]
        assert ids == expected[len(seen) : len(seen) + limit], (limit, order, len(seen))
        assert ids, "an empty page before the end"
        assert page["object"] == "list"
        assert page["first_id"] == ids[0]
        assert page["last_id"] == ids[-1]
        seen.extend(ids)
        assert page["has_more"] is (len(seen) < len(expected)), (limit, order, len(seen))
        if not page["has_more"]:
            return seen
        after = page["last_id"]


def test_paging_walks_the_whole_history(conv_client: openai.OpenAI) -> None:
    conv = conv_client.conversations.create()
    ids: list[str] = []
    for batch in range(13):
        count = 20 if batch < 12 else 10
        items = [user_message(f"item {batch * 20 + n}") for n in range(count)]
        added = conv_client.conversations.items.create(conv.id, items=items)
        ids.extend(item.id for item in added.data)
    assert len(ids) == len(set(ids)) == 250

    for order, expected in (("asc", ids), ("desc", ids[::-1])):
        for limit in (1, 7, 100):
            assert _walk(conv_client, conv.id, limit, order, expected) == expected

    # The SDK's own auto-paging (which follows `last_id`) sees the same history.
    assert [i.id for i in conv_client.conversations.items.list(conv.id, limit=7)] == ids[::-1]
    first = raw_items_page(conv_client, conv.id)
    assert len(first["data"]) == 20 and first["has_more"] is True
    validate_list(first)
    # An `after` that names no item of this conversation gives an empty page.
    assert raw_items_page(conv_client, conv.id, after="msg_unknown")["data"] == []


# -- errors -----------------------------------------------------------------------------------


def _error(exc_info: pytest.ExceptionInfo[openai.APIStatusError]) -> dict[str, Any]:
    return exc_info.value.response.json()["error"]


def test_unknown_conversation_is_404_on_every_route(conv_client: openai.OpenAI) -> None:
    missing = "conv_does_not_exist"
    calls = [
        lambda: conv_client.conversations.retrieve(missing),
        lambda: conv_client.conversations.update(missing, metadata={"a": "b"}),
        lambda: conv_client.conversations.delete(missing),
        lambda: conv_client.conversations.items.create(missing, items=[user_message("x")]),
        lambda: conv_client.conversations.items.list(missing),
        lambda: conv_client.conversations.items.retrieve("msg_x", conversation_id=missing),
        lambda: conv_client.conversations.items.delete("msg_x", conversation_id=missing),
        lambda: conv_client.responses.create(
            model="openai/gpt-4o", input="hi", conversation=missing
        ),
        lambda: conv_client.responses.create(
            model="openai/gpt-4o", input="hi", conversation={"id": missing}, stream=True
        ),
    ]
    for call in calls:
        with pytest.raises(openai.NotFoundError) as exc_info:
            call()
        error = _error(exc_info)
        assert error["type"] == "invalid_request_error"
        assert missing in error["message"]


def test_unknown_item_is_404(conv_client: openai.OpenAI) -> None:
    conv = conv_client.conversations.create(items=[user_message("x")])
    for call in (
        lambda: conv_client.conversations.items.retrieve("msg_nope", conversation_id=conv.id),
        lambda: conv_client.conversations.items.delete("msg_nope", conversation_id=conv.id),
    ):
        with pytest.raises(openai.NotFoundError) as exc_info:
            call()
        assert _error(exc_info)["param"] == "item_id"
    assert len(all_items(conv_client, conv.id)) == 1


def test_more_than_20_items_is_400(conv_client: openai.OpenAI) -> None:
    too_many = [user_message(str(n)) for n in range(21)]
    with pytest.raises(openai.BadRequestError) as exc_info:
        conv_client.conversations.create(items=too_many)
    assert _error(exc_info)["param"] == "items"
    conv = conv_client.conversations.create(items=too_many[:20])
    with pytest.raises(openai.BadRequestError) as exc_info:
        conv_client.conversations.items.create(conv.id, items=too_many)
    assert _error(exc_info)["param"] == "items"
    assert len(all_items(conv_client, conv.id)) == 20


@pytest.mark.parametrize(
    ("items", "param"),
    [
        (
            [{"role": "user", "content": "ok"}] * 3 + [{"role": "wizard", "content": "x"}],
            "items[3].role",
        ),
        ([{"role": "user", "content": [{"type": "input_text"}]}], "items[0].content[0].text"),
        ([{"type": "function_call", "name": "f", "arguments": "{}"}], "items[0].call_id"),
        ([{"type": "mcp_call", "server_label": "s", "arguments": "{}"}], "items[0].name"),
        ([{"type": "reasoning"}], "items[0].summary"),
        ([{"type": "item_reference", "id": "msg_1"}], "items[0].type"),
        ([{"type": "teleport"}], "items[0].type"),
        (["just a string"], "items[0]"),
        ([user_message("a", id="msg_same"), user_message("b", id="msg_same")], "items[1].id"),
    ],
)
def test_invalid_items_are_400_naming_the_field(
    conv_client: openai.OpenAI, items: list[Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as exc_info:
        conv_client.conversations.create(items=items)
    assert _error(exc_info)["param"] == param
    conv = conv_client.conversations.create()
    with pytest.raises(openai.BadRequestError) as exc_info:
        conv_client.conversations.items.create(conv.id, items=items)
    assert _error(exc_info)["param"] == param
    assert all_items(conv_client, conv.id) == []


def test_other_bad_requests(conv_client: openai.OpenAI) -> None:
    conv = conv_client.conversations.create(items=[user_message("x", id="msg_taken")])
    path = f"/conversations/{conv.id}"
    bad = [
        (lambda: conv_client.conversations.items.create(conv.id, items=[]), "items"),
        (lambda: conv_client.conversations.items.list(conv.id, limit=0), "limit"),
        (lambda: conv_client.conversations.items.list(conv.id, limit=101), "limit"),
        (lambda: conv_client.conversations.items.list(conv.id, order="sideways"), "order"),
        (lambda: conv_client.conversations.items.list(conv.id, include=["bogus"]), "include"),
        (lambda: conv_client.get(f"{path}/items?include=bogus", cast_to=object), "include"),
        (lambda: conv_client.post(path, body={}, cast_to=object), "metadata"),
        (
            lambda: conv_client.conversations.create(metadata={f"k{n}": "v" for n in range(17)}),
            "metadata",
        ),
        (lambda: conv_client.conversations.create(metadata={"k": "v" * 513}), "metadata"),
    ]
    for call, param in bad:
        with pytest.raises(openai.BadRequestError) as exc_info:
            call()
        assert _error(exc_info)["param"] == param
    # An id already in the conversation is a conflict, and nothing of the batch is added.
    with pytest.raises(openai.ConflictError):
        conv_client.conversations.items.create(
            conv.id, items=[user_message("new"), user_message("dup", id="msg_taken")]
        )
    assert [i["id"] for i in all_items(conv_client, conv.id)] == ["msg_taken"]
