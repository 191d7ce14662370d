"""MCP calls that need a human's approval: the request ends the turn, the client approves
or denies in a later request, chained by `previous_response_id` or in a conversation."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from tests.e2e.test_mcp import BOILING, MODEL, QUESTION, create, item_events, stream
from tests.support.upstream import Recordings, Turn

pytest_plugins = ["tests.support.mcp_server"]  # the MCP server fixtures

GREET = ("greet_everyone", {"url": "https://example.org"})
RECORDED_TOOLS = ["greet_everyone", "get_boiling_point"]  # what the recorded model was offered


def tools_for(url: str, **extra) -> list[dict]:
    return [{"type": "mcp", "server_label": "tools", "server_url": url, **extra}]


def answer(request_id: str, approve: bool, reason: str | None = None) -> dict:
    item = {"type": "mcp_approval_response", "approval_request_id": request_id, "approve": approve}
    if reason:
        item["reason"] = reason
    return item


def test_approve_by_previous_response_id(client, upstream, mcp_server):
    """Replayed from the recordings of a real approval flow."""
    upstream.recordings = Recordings()
    tools = tools_for(mcp_server.http_url, require_approval="always", allowed_tools=RECORDED_TOOLS)
    first, events = stream(client, model=MODEL, input=QUESTION, tools=tools)
    assert first["status"] == "completed"
    listing, request = first["output"]
    assert listing["type"] == "mcp_list_tools"
    assert request["type"] == "mcp_approval_request" and request["id"].startswith("mcpr_")
    assert request["server_label"] == "tools" and request["name"] == "get_boiling_point"
    assert json.loads(request["arguments"]) == BOILING[1]
    assert item_events(events, request["id"]) == [
        "response.output_item.added",
        "response.output_item.done",
    ]
    assert not mcp_server.seen.calls  # nothing ran yet

    second, events = stream(
        client,
        model=MODEL,
        previous_response_id=first["id"],
        tools=tools,
        input=[answer(request["id"], True)],
    )
    call, message = second["output"]
    assert call["type"] == "mcp_call" and call["approval_request_id"] == request["id"]
    assert call["output"] == "-100" and call["status"] == "completed"
    assert "-100" in message["content"][0]["text"]
    assert mcp_server.seen.calls == [BOILING]
    assert mcp_server.seen.list_tools == 1  # the listing came from history
    # the model saw the call it asked for and its result, as if it had run at once
    roles = [m["role"] for m in upstream.requests[-1]["messages"]]
    assert roles == ["user", "assistant", "tool"]
    inputs = client.responses.input_items.list(second["id"])
    assert [i.type for i in inputs.data] == ["mcp_approval_response"]


def test_deny_by_previous_response_id(client, upstream, mcp_server):
    upstream.script(Turn(tool_calls=[BOILING]), Turn(text="Understood, I will not check."))
    tools = tools_for(mcp_server.sse_url, require_approval="always")
    first = create(client, model=MODEL, input=QUESTION, tools=tools)
    request = first["output"][-1]
    second = create(
        client,
        model=MODEL,
        previous_response_id=first["id"],
        tools=tools,
        input=[answer(request["id"], False, "not now")],
    )
    assert [i["type"] for i in second["output"]] == ["message"]
    assert not mcp_server.seen.calls
    messages = upstream.requests[-1]["messages"]
    assert messages[1]["tool_calls"][0]["function"]["name"] == "get_boiling_point"
    assert messages[2] == {
        "role": "tool",
        "tool_call_id": messages[1]["tool_calls"][0]["id"],
        "content": "The user denied this tool call. Reason: not now",
    }


@pytest.mark.parametrize("approve", [True, False])
def test_approval_in_a_conversation(client, upstream, mcp_server, approve):
    upstream.recordings = Recordings() if approve else None
    if not approve:
        upstream.script(Turn(tool_calls=[BOILING]), Turn(text="Fine."))
    conversation = client.conversations.create()
    tools = tools_for(mcp_server.http_url, allowed_tools=RECORDED_TOOLS)  # approval by default
    first = create(client, model=MODEL, input=QUESTION, tools=tools, conversation=conversation.id)
    request = first["output"][-1]
    assert request["type"] == "mcp_approval_request"
    assert first["tools"][0]["require_approval"] == "always"
    second, _ = stream(
        client,
        model=MODEL,
        input=[answer(request["id"], approve)],
        tools=tools,
        conversation=conversation.id,
    )
    items = client.conversations.items.list(conversation.id, order="asc")
    kinds = [i.type for i in items.data]
    if approve:
        assert [i["type"] for i in second["output"]] == ["mcp_call", "message"]
        assert second["output"][0]["output"] == "-100"
        assert kinds == [
            "message",
            "mcp_list_tools",
            "mcp_approval_request",
            "mcp_approval_response",
            "mcp_call",
            "message",
        ]
        assert mcp_server.seen.calls == [BOILING]
    else:
        assert [i["type"] for i in second["output"]] == ["message"]
        assert kinds == [
            "message",
            "mcp_list_tools",
            "mcp_approval_request",
            "mcp_approval_response",
            "message",
        ]
        assert not mcp_server.seen.calls
        assert "denied" in upstream.requests[-1]["messages"][-1]["content"]
    assert mcp_server.seen.list_tools == 1


def test_partial_approval_policy(client, upstream, mcp_server):
    """`never` for one tool: it runs at once; the other waits for approval."""
    upstream.script(Turn(tool_calls=[BOILING, GREET]), Turn(text="Both."))
    tools = tools_for(
        mcp_server.http_url, require_approval={"never": {"tool_names": ["get_boiling_point"]}}
    )
    first, _ = stream(client, model=MODEL, input="x", tools=tools)
    assert [i["type"] for i in first["output"]] == [
        "mcp_list_tools",
        "mcp_call",
        "mcp_approval_request",
    ]
    assert first["output"][1]["output"] == "-100"
    assert mcp_server.seen.calls == [BOILING]
    assert len(upstream.requests) == 1
    request = first["output"][2]
    second = create(
        client,
        model=MODEL,
        previous_response_id=first["id"],
        tools=tools,
        input=[answer(request["id"], True)],
    )
    assert second["output"][0]["output"] == "Hello, everyone at https://example.org!"
    assert second["output"][-1]["content"][0]["text"] == "Both."
    assert mcp_server.seen.calls == [BOILING, GREET]
    assert [m["role"] for m in upstream.requests[-1]["messages"]] == [
        "user",
        "assistant",
        "tool",
        "assistant",
        "tool",
    ]


def test_credentials_reach_the_server_on_the_continuation(client, upstream, mcp_auth_server):
    upstream.script(Turn(tool_calls=[BOILING]), Turn(text="-100 it is."))
    tools = tools_for(
        mcp_auth_server.http_url, require_approval="always", authorization=mcp_auth_server.token
    )
    first = create(client, model=MODEL, input=QUESTION, tools=tools)
    second = create(
        client,
        model=MODEL,
        previous_response_id=first["id"],
        tools=tools,  # the client sends the credentials again
        input=[answer(first["output"][-1]["id"], True)],
    )
    assert second["output"][0]["output"] == "-100"
    assert set(mcp_auth_server.seen.authorization) == {f"Bearer {mcp_auth_server.token}"}
    for response in (first, second):
        stored = client.responses.retrieve(response["id"]).model_dump_json()
        assert mcp_auth_server.token not in stored


def test_continuation_without_credentials_fails_the_call_cleanly(client, upstream, mcp_auth_server):
    upstream.script(Turn(tool_calls=[BOILING]), Turn(text="The server refused."))
    tools = tools_for(
        mcp_auth_server.http_url, require_approval="always", authorization=mcp_auth_server.token
    )
    first = create(client, model=MODEL, input=QUESTION, tools=tools)
    second = create(
        client,
        model=MODEL,
        previous_response_id=first["id"],
        tools=tools_for(mcp_auth_server.http_url, require_approval="always"),
        input=[answer(first["output"][-1]["id"], True)],
    )
    call = second["output"][0]
    assert call["status"] == "failed"
    assert call["error"] == {
        "type": "http_error",
        "code": 401,
        "message": call["error"]["message"],
    }
    assert "rejected the credentials" in call["error"]["message"]
    assert second["status"] == "completed"


@pytest.mark.parametrize("chained", [True, False])
def test_unknown_approval_id_is_400(client, loom_server, upstream, mcp_server, chained):
    body: dict = {
        "model": MODEL,
        "tools": tools_for(mcp_server.http_url),
        "input": [
            {"role": "user", "content": "hi"},
            answer("mcpr_does_not_exist", True),
        ],
    }
    if chained:
        upstream.script(Turn(text="hello"))
        body["previous_response_id"] = client.responses.create(model=MODEL, input="x").id
        upstream.requests.clear()
    response = httpx.post(f"{loom_server.url}/v1/responses", json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == "input[1].approval_request_id"
    assert "mcpr_does_not_exist" in error["message"]
    assert not upstream.requests and not mcp_server.seen.list_tools


def test_answering_twice_is_400(client, upstream, mcp_server):
    upstream.script(Turn(tool_calls=[BOILING]), Turn(text="done"))
    tools = tools_for(mcp_server.http_url)
    first = create(client, model=MODEL, input=QUESTION, tools=tools)
    request_id = first["output"][-1]["id"]
    second = create(
        client,
        model=MODEL,
        previous_response_id=first["id"],
        tools=tools,
        input=[answer(request_id, True)],
    )
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(
            model=MODEL,
            previous_response_id=second["id"],
            tools=tools,
            input=[answer(request_id, True)],
        )
    assert info.value.body["param"] == "input[0].approval_request_id"
    assert mcp_server.seen.calls == [BOILING]


def test_approval_without_storage_by_passing_items_back(client, upstream, mcp_server):
    """With store=false the client passes the listing and the request back in `input`."""
    upstream.script(Turn(tool_calls=[BOILING]), Turn(text="It is -100."))
    tools = tools_for(mcp_server.http_url)
    first = create(client, model=MODEL, input=QUESTION, tools=tools, store=False)
    second = create(
        client,
        model=MODEL,
        tools=tools,
        store=False,
        input=[
            {"role": "user", "content": QUESTION},
            *first["output"],
            answer(first["output"][-1]["id"], True),
        ],
    )
    assert [i["type"] for i in second["output"]] == ["mcp_call", "message"]
    assert mcp_server.seen.list_tools == 1
