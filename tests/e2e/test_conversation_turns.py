"""Responses that live in a conversation, end to end, on SQLite and on PostgreSQL.

A turn created with `conversation` sees the conversation's items as its context and, when it
ends, appends its input and every output item in one block: in order, exactly once, also
when turns run concurrently or the client disconnects mid-stream. A failed turn appends
nothing.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import openai
import pytest

from tests.e2e.test_conversations import (  # the *_fixture imports register the fixtures
    EVERY_TYPE,
    all_items,
    backend_fixture,  # noqa: F401
    conv_aclient_fixture,  # noqa: F401
    conv_client_fixture,  # noqa: F401
    loom_url_fixture,  # noqa: F401
    pg_loom_fixture,  # noqa: F401
    user_message,
    validate_item,
)
from tests.support.schemas import validate_event, validate_response
from tests.support.stream_validator import parse_sse, validate_stream
from tests.support.upstream import FakeUpstream, Turn

MODEL = "openai/gpt-4o"
WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


def create_response(client: openai.OpenAI, stream: bool, **kwargs: Any) -> dict[str, Any]:
    """Create a response and return its final Response JSON, validated either way."""
    if stream:
        with client.responses.with_streaming_response.create(stream=True, **kwargs) as raw:
            return validate_stream(parse_sse(raw.read()))
    raw = client.responses.with_raw_response.create(**kwargs).http_response.json()
    validate_response(raw)
    return raw


def _text(item: dict[str, Any]) -> str:
    return "".join(part.get("text", "") for part in item["content"])


def _input_items(client: openai.OpenAI, response_id: str) -> list[dict[str, Any]]:
    page = client.responses.input_items.with_raw_response.list(response_id, order="asc")
    return page.http_response.json()["data"]


# -- turns in a conversation ------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_multi_turn_with_a_function_call(
    conv_client: openai.OpenAI, upstream: FakeUpstream, stream: bool
) -> None:
    conv = conv_client.conversations.create(metadata={"user": "ada"})
    upstream.script(
        Turn(tool_calls=[("get_weather", {"city": "Paris"})]),
        Turn(text="It is sunny in Paris."),
        Turn(text="You asked about Paris."),
    )

    first = create_response(
        conv_client,
        stream,
        model=MODEL,
        conversation=conv.id,
        input="What is the weather in Paris?",
        instructions="Be brief.",
        tools=[WEATHER_TOOL],
    )
    assert first["status"] == "completed"
    assert first["conversation"] == {"id": conv.id}
    (call,) = first["output"]
    assert call["type"] == "function_call" and call["name"] == "get_weather"
    assert json.loads(call["arguments"]) == {"city": "Paris"}

    after_first = all_items(conv_client, conv.id)
    assert after_first == [*_input_items(conv_client, first["id"]), call]

    second = create_response(
        conv_client,
        stream,
        model=MODEL,
        conversation={"id": conv.id},
        input=[{"type": "function_call_output", "call_id": call["call_id"], "output": "sunny"}],
        tools=[WEATHER_TOOL],
    )
    assert second["status"] == "completed"
    (answer,) = second["output"]
    assert _text(answer) == "It is sunny in Paris."

    items = all_items(conv_client, conv.id)
    for item in items:
        validate_item(item)
    assert [i["type"] for i in items] == [
        "message",
        "function_call",
        "function_call_output",
        "message",
    ]
    assert items[:2] == after_first
    assert items[1] == call
    assert items[2]["call_id"] == call["call_id"] and items[2]["output"] == "sunny"
    assert items[2] == _input_items(conv_client, second["id"])[0]
    assert items[3] == answer

    # The second turn's model request carries the whole history before its new input.
    assert upstream.requests[1]["messages"] == [
        {"role": "user", "content": "What is the weather in Paris?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": call["call_id"],
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": call["arguments"]},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call["call_id"], "content": "sunny"},
    ]

    third = create_response(
        conv_client, stream, model=MODEL, conversation=conv.id, input="What did I ask?"
    )
    assert _text(third["output"][0]) == "You asked about Paris."
    assert upstream.requests[2]["messages"][-2:] == [
        {"role": "assistant", "content": "It is sunny in Paris."},
        {"role": "user", "content": "What did I ask?"},
    ]
    assert len(upstream.requests[2]["messages"]) == 5
    final = all_items(conv_client, conv.id)
    assert final[:4] == items
    assert [i["role"] for i in final[4:]] == ["user", "assistant"]
    assert final[5] == third["output"][0]
    # The conversation itself is untouched by its turns.
    assert conv_client.conversations.retrieve(conv.id).metadata == {"user": "ada"}


def test_history_of_every_item_type_feeds_the_model(
    conv_client: openai.OpenAI, upstream: FakeUpstream
) -> None:
    conv = conv_client.conversations.create(items=EVERY_TYPE[:7])
    conv_client.conversations.items.create(conv.id, items=EVERY_TYPE[7:])
    upstream.script(Turn(text="Done."))
    response = create_response(
        conv_client, False, model=MODEL, conversation=conv.id, input="Summarize."
    )
    assert response["status"] == "completed"
    messages = upstream.requests[0]["messages"]
    assert [m["role"] for m in messages] == [
        "system",  # system message
        "system",  # developer message
        "user",
        "assistant",
        "assistant",  # function_call
        "tool",  # its output
        "tool",  # the output given as content parts
        "assistant",  # mcp_call, with its result as a tool message
        "tool",
        "assistant",  # file_search_call, with its hits as a tool message
        "tool",
        "user",  # the new input
    ]
    user_parts = messages[2]["content"]
    kinds = [p["type"] for p in user_parts]
    assert kinds == ["text", "image_url", "image_url", "file", "file", "file"]
    assert messages[3]["content"] == "A cat and a report.I will not read the third one."
    assert messages[6]["content"] == "as parts"
    assert messages[8] == {"role": "tool", "tool_call_id": "mcp_ask", "content": "because"}
    assert messages[9]["tool_calls"][0]["function"]["name"] == "knowledge_search"
    assert "document_id: file-policy" in messages[10]["content"]
    items = all_items(conv_client, conv.id)
    assert items[: len(EVERY_TYPE)] == EVERY_TYPE
    assert [i["type"] for i in items[len(EVERY_TYPE) :]] == ["message", "message"]


async def test_concurrent_turns_append_contiguous_blocks(
    conv_aclient: openai.AsyncOpenAI, upstream: FakeUpstream
) -> None:
    conv = await conv_aclient.conversations.create(items=[user_message("shared start")])
    words = "alpha beta gamma delta epsilon zeta"
    upstream.script(*(Turn(text=words, delay=0.05) for _ in range(3)))

    async def turn(tag: str, stream: bool) -> tuple[str, dict[str, Any], float]:
        start = time.perf_counter()
        kwargs: dict[str, Any] = {
            "model": MODEL,
            "conversation": conv.id,
            "input": [user_message(f"{tag} one"), user_message(f"{tag} two")],
        }
        if stream:
            async with conv_aclient.responses.with_streaming_response.create(
                stream=True, **kwargs
            ) as raw_stream:
                response = validate_stream(parse_sse(await raw_stream.read()))
        else:
            raw = await conv_aclient.responses.with_raw_response.create(**kwargs)
            response = raw.http_response.json()
            validate_response(response)
        return tag, response, time.perf_counter() - start

    started = time.perf_counter()
    results = await asyncio.gather(turn("A", False), turn("B", False), turn("C", True))
    elapsed = time.perf_counter() - started
    # They really overlapped: together they took far less than one after the other.
    assert elapsed < 0.8 * sum(took for _, _, took in results), (elapsed, results)

    responses = {tag: response for tag, response, _ in results}
    for response in responses.values():
        assert response["status"] == "completed"
        assert _text(response["output"][0]) == words

    page = await conv_aclient.conversations.items.with_raw_response.list(
        conv.id, order="asc", limit=100
    )
    items = page.http_response.json()["data"]
    assert len(items) == 1 + 3 * 3
    assert _text(items[0]) == "shared start"
    blocks = [items[i : i + 3] for i in range(1, len(items), 3)]
    seen_tags = []
    for block in blocks:
        tag = _text(block[0]).split()[0]
        seen_tags.append(tag)
        # Each turn is one contiguous block: its two inputs, then its output.
        assert [_text(i) for i in block[:2]] == [f"{tag} one", f"{tag} two"]
        assert block[2] == responses[tag]["output"][0]
    assert sorted(seen_tags) == ["A", "B", "C"]
    assert len({i["id"] for i in items}) == len(items)


def test_disconnect_mid_stream_still_stores_the_whole_turn(
    conv_client: openai.OpenAI,
    loom_url: str,
    upstream: FakeUpstream,
    backend: str,
    request: pytest.FixtureRequest,
) -> None:
    loom = request.getfixturevalue("loom_server" if backend == "sqlite" else "pg_loom")
    words = " ".join(f"word{n}" for n in range(40))
    upstream.script(Turn(text=words, delay=0.1))
    conv = conv_client.conversations.create()
    body = {"model": MODEL, "conversation": conv.id, "input": "Tell a story.", "stream": True}

    raw = b""
    with (
        httpx.Client(base_url=loom_url, timeout=30) as http,
        http.stream("POST", "/v1/responses", json=body) as stream,
    ):
        assert stream.status_code == 200
        for chunk in stream.iter_raw():
            raw += chunk
            if raw.count(b"event: response.output_text.delta") >= 3:
                break
    # The connection is closed; the upstream still has seconds of text to send.
    events = parse_sse(raw[: raw.rindex(b"\n\n") + 2])
    for name, event in events:
        assert name == event["type"]
        validate_event(event)
    response_id = events[0][1]["response"]["id"]
    assert all_items(conv_client, conv.id) == []  # the turn is still running

    loom.wait_for_turns()  # the turn has run to its end and been stored
    items = all_items(conv_client, conv.id)
    assert len(items) == 2, items  # exactly once
    user, assistant = items
    assert user["role"] == "user" and _text(user) == "Tell a story."
    assert assistant["role"] == "assistant" and _text(assistant) == words
    assert assistant["status"] == "completed"

    stored = conv_client.responses.with_raw_response.retrieve(response_id).http_response.json()
    validate_response(stored)
    assert stored["status"] == "completed"
    assert stored["output"] == [assistant]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
@pytest.mark.parametrize("fail_mode", ["disconnect", "error_event"])
def test_failed_turn_leaves_the_conversation_unchanged(
    conv_client: openai.OpenAI, upstream: FakeUpstream, stream: bool, fail_mode: str
) -> None:
    conv = conv_client.conversations.create(items=[user_message("earlier")])
    before = all_items(conv_client, conv.id)
    upstream.script(Turn(text="one two three four five", fail_after=2, fail_mode=fail_mode))
    failed = create_response(
        conv_client, stream, model=MODEL, conversation=conv.id, input="this turn fails"
    )
    assert failed["status"] == "failed"
    assert failed["error"]["message"]
    assert all_items(conv_client, conv.id) == before
    stored = conv_client.responses.retrieve(failed["id"])
    assert stored.status == "failed"

    # The conversation goes on as if the failed turn never happened.
    upstream.script(Turn(text="recovered"))
    ok = create_response(conv_client, stream, model=MODEL, conversation=conv.id, input="again")
    assert ok["status"] == "completed"
    assert upstream.requests[-1]["messages"] == [
        {"role": "user", "content": "earlier"},
        {"role": "user", "content": "again"},
    ]
    items = all_items(conv_client, conv.id)
    assert items[:1] == before and len(items) == 3
    assert items[2] == ok["output"][0]


# -- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_conversation_and_previous_response_id_together_is_400(
    conv_client: openai.OpenAI, upstream: FakeUpstream, stream: bool
) -> None:
    conv = conv_client.conversations.create()
    with pytest.raises(openai.BadRequestError) as exc_info:
        conv_client.responses.create(
            model=MODEL,
            input="hi",
            conversation=conv.id,
            previous_response_id="resp_123",
            stream=stream,
        )
    assert exc_info.value.response.json()["error"]["param"] == "conversation"
    assert upstream.requests == []
    assert all_items(conv_client, conv.id) == []


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_unknown_conversation_is_404(
    conv_client: openai.OpenAI, upstream: FakeUpstream, stream: bool
) -> None:
    for conversation in ("conv_missing", {"id": "conv_missing"}):
        with pytest.raises(openai.NotFoundError) as exc_info:
            conv_client.responses.create(
                model=MODEL, input="hi", conversation=conversation, stream=stream
            )
        error = exc_info.value.response.json()["error"]
        assert error["param"] == "conversation"
        assert "conv_missing" in error["message"]
    assert upstream.requests == []


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_input_id_already_in_the_conversation_is_400(
    conv_client: openai.OpenAI, upstream: FakeUpstream, stream: bool
) -> None:
    conv = conv_client.conversations.create(items=[user_message("first", id="msg_taken")])
    upstream.script(Turn(text="never sent"))
    with pytest.raises(openai.BadRequestError) as exc_info:
        conv_client.responses.create(
            model=MODEL,
            conversation=conv.id,
            input=[user_message("again", id="msg_taken")],
            stream=stream,
        )
    assert exc_info.value.response.json()["error"]["param"] == "input[0].id"
    assert [i["id"] for i in all_items(conv_client, conv.id)] == ["msg_taken"]
