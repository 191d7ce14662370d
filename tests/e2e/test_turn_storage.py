"""How a turn is kept: a failed save, `store=false` on a conversation, item references."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.support.stream_validator import parse_sse, validate_stream
from tests.support.upstream import Turn

MODEL = "openai/gpt-4o"


def test_conversation_deleted_mid_turn_fails_the_response(client, loom_server, upstream):
    conv = client.conversations.create()
    upstream.script(Turn(text="a slow answer that takes a while", delay=0.05))
    with httpx.stream(
        "POST",
        f"{loom_server.url}/v1/responses",
        timeout=30,
        json={
            "model": MODEL,
            "input": "hi",
            "conversation": conv.id,
            "stream": True,
        },
    ) as response:
        chunks = response.iter_bytes()
        first = next(chunks)
        client.conversations.delete(conv.id)
        raw = first + b"".join(chunks)
    final = validate_stream(parse_sse(raw))
    assert final["status"] == "failed"
    assert "could not be stored" in final["error"]["message"]
    assert client.responses.retrieve(final["id"]).status == "failed"


def test_store_false_still_appends_to_the_conversation(client, upstream):
    conv = client.conversations.create()
    upstream.script(Turn(text="kept in the conversation"))
    response = client.responses.create(model=MODEL, input="hi", conversation=conv.id, store=False)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)
    items = client.conversations.items.list(conv.id, order="asc").data
    assert [i.type for i in items] == ["message", "message"]
    assert items[1].content[0].text == "kept in the conversation"


def test_item_reference_resolves_against_history(client, upstream):
    upstream.script(Turn(text="first answer"), Turn(text="second answer"))
    first = client.responses.create(model=MODEL, input="q1")
    message_id = first.output[0].id
    second = client.responses.create(
        model=MODEL,
        previous_response_id=first.id,
        input=[{"type": "item_reference", "id": message_id}, {"role": "user", "content": "q2"}],
    )
    assert second.output_text == "second answer"
    assert upstream.requests[-1]["messages"] == [
        {"role": "user", "content": "q1"},
        {"role": "assistant", "content": "first answer"},
        {"role": "user", "content": "q2"},
    ]
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(
            model=MODEL,
            previous_response_id=first.id,
            input=[{"type": "item_reference", "id": "msg_unknown"}],
        )
    assert info.value.body["param"] == "input[0].id"


def test_message_phase_is_kept(client, upstream):
    upstream.script(Turn(text="ok"))
    response = client.responses.create(
        model=MODEL,
        input=[
            {"role": "assistant", "content": "thinking aloud", "phase": "commentary"},
            {"role": "user", "content": "go on"},
        ],
    )
    items = client.responses.input_items.list(response.id, order="asc").data
    assert items[0].phase == "commentary"


def test_includable_values_match_the_sdk():
    import typing

    from openai.types.responses.response_includable import ResponseIncludable

    from loom.api.includes import INCLUDABLE

    assert set(typing.get_args(ResponseIncludable)) == INCLUDABLE
