"""Remote MCP tools run by Loom: the `openai` SDK → Loom → a real upstream and a real MCP
server (the `mcp` SDK, on loopback, over streamable HTTP and SSE)."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from pathlib import Path

import openai
import pytest

from tests.conftest import run_loom
from tests.support.schemas import validate_response
from tests.support.shared import SHARED_RECORDINGS, read_shared_json
from tests.support.stream_validator import validate_stream
from tests.support.upstream import Recordings, Turn, request_signature

pytest_plugins = ["tests.support.mcp_server"]  # the MCP server fixtures

MODEL = "openai/gpt-4o"
QUESTION = "What is the boiling point of myawesomeliquid in Celsius?"
BOILING = ("get_boiling_point", {"liquid_name": "myawesomeliquid", "celsius": True})
WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "Get current temperature for a given location.",
    "parameters": {
        "type": "object",
        "properties": {"location": {"type": "string"}},
        "required": ["location"],
    },
}


def mcp_tool(url: str, **extra) -> dict:
    return {
        "type": "mcp",
        "server_label": "tools",
        "server_url": url,
        "require_approval": "never",
        **extra,
    }


def dump(obj) -> dict:
    return obj.model_dump(mode="json", exclude_unset=True, by_alias=True)


def stream(client: openai.OpenAI, **kwargs) -> tuple[dict, list[dict]]:
    """A streamed response, every event validated; the final Response and the events."""
    with client.responses.create(stream=True, **kwargs) as events:
        data = [dump(event) for event in events]
    return validate_stream(data), data


def create(client: openai.OpenAI, **kwargs) -> dict:
    data = dump(client.responses.create(**kwargs))
    validate_response(data)
    return data


def item_events(events: list[dict], item_id: str) -> list[str]:
    """The event types of one item, from its output_item.added to its output_item.done."""
    start = next(
        n
        for n, e in enumerate(events)
        if e["type"] == "response.output_item.added" and e["item"]["id"] == item_id
    )
    end = next(
        n
        for n, e in enumerate(events)
        if e["type"] == "response.output_item.done" and e["item"]["id"] == item_id
    )
    return [e["type"] for e in events[start : end + 1]]


def sequential_mcp_recordings() -> Recordings:
    """The shared recordings, with the steps of one recorded run of the sequential MCP test
    preferred where several runs recorded the same request (their answers differ slightly,
    and the chained turn's request holds the first turn's answer)."""
    recordings = Recordings()
    for name in (
        "cdc628da240d62f71111f8e560f56d9fa3c0e3042f45ce5d5bc3075e3ba32574",  # answer -100
        "a7f00b46f85b55930aa69bd5b057d33eddd9983c7fd47ddb6441240752399379",  # chained turn
    ):
        data = read_shared_json(SHARED_RECORDINGS / f"{name}.json")
        recordings.by_signature[request_signature(data["request"]["body"])] = data
    return recordings


def tool_names(body: dict) -> list[str]:
    return [t["function"]["name"] for t in body.get("tools") or []]


# -- one call -----------------------------------------------------------------------------


def test_one_call_non_streaming(client, upstream, mcp_server):
    upstream.script(Turn(tool_calls=[BOILING]), Turn(text="It boils at -100°C."))
    response = create(client, model=MODEL, input=QUESTION, tools=[mcp_tool(mcp_server.http_url)])
    assert response["status"] == "completed"
    listing, call, message = response["output"]
    assert listing["type"] == "mcp_list_tools" and listing["server_label"] == "tools"
    assert listing["error"] is None
    assert {t["name"] for t in listing["tools"]} == {
        "greet_everyone",
        "get_boiling_point",
        "explode",
        "place_order",
    }
    assert call["type"] == "mcp_call" and call["status"] == "completed"
    assert call["name"] == "get_boiling_point" and call["output"] == "-100"
    assert call["error"] is None and call["id"].startswith("mcp_")
    assert json.loads(call["arguments"]) == BOILING[1]
    assert message["content"][0]["text"] == "It boils at -100°C."
    assert mcp_server.seen.calls == [BOILING]
    # one MCP session for the turn, closed when it ended
    assert len(mcp_server.seen.sessions) == 1
    assert mcp_server.seen.requests[-1][0] == "DELETE"
    # the model read the result of its call
    assert upstream.requests[1]["messages"][1:] == [
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": call["id"],
                    "type": "function",
                    "function": {"name": "get_boiling_point", "arguments": call["arguments"]},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call["id"], "content": "-100"},
    ]
    stored = dump(client.responses.retrieve(response["id"]))
    assert stored["output"] == response["output"]


@pytest.mark.parametrize("transport", ["streamable_http", "sse", "sse_fallback"])
def test_one_call_streaming(client, upstream, mcp_server, transport):
    url = {
        "streamable_http": mcp_server.http_url,
        "sse": mcp_server.sse_url,
        "sse_fallback": mcp_server.legacy_url,  # SSE at a path that does not say so
    }[transport]
    upstream.script(Turn(tool_calls=[BOILING]), Turn(text="It boils at -100°C."))
    final, events = stream(client, model=MODEL, input=QUESTION, tools=[mcp_tool(url)])
    assert final["status"] == "completed"
    listing, call, message = final["output"]
    assert item_events(events, listing["id"]) == [
        "response.output_item.added",
        "response.mcp_list_tools.in_progress",
        "response.mcp_list_tools.completed",
        "response.output_item.done",
    ]
    assert item_events(events, call["id"]) == [
        "response.output_item.added",
        "response.mcp_call.in_progress",
        "response.mcp_call_arguments.delta",
        "response.mcp_call_arguments.done",
        "response.mcp_call.completed",
        "response.output_item.done",
    ]
    assert call["output"] == "-100" and message["type"] == "message"
    assert mcp_server.seen.calls == [BOILING]


def test_text_and_reasoning_around_a_call(client, upstream, mcp_server):
    upstream.script(
        Turn(reasoning="I should look it up", text="Let me check.", tool_calls=[BOILING]),
        Turn(text="It is -100."),
    )
    final, _ = stream(client, model=MODEL, input="x", tools=[mcp_tool(mcp_server.http_url)])
    kinds = [i["type"] for i in final["output"]]
    assert kinds == ["mcp_list_tools", "reasoning", "message", "mcp_call", "message"]
    roles = [m["role"] for m in upstream.requests[1]["messages"]]
    assert roles == ["user", "assistant", "assistant", "tool"]


def test_replayed_sequential_boiling_point_and_chained_turn(client, upstream, mcp_server):
    """Real gpt-4o traffic: call get_boiling_point, answer; then a chained turn reuses the
    listing from history instead of listing again."""
    upstream.recordings = sequential_mcp_recordings()
    tools = [mcp_tool(mcp_server.http_url, allowed_tools=["greet_everyone", "get_boiling_point"])]
    first, _ = stream(client, model=MODEL, input=QUESTION, tools=tools)
    kinds = [i["type"] for i in first["output"]]
    assert kinds == ["mcp_list_tools", "mcp_call", "message"], (first["error"], first["output"])
    assert [t["name"] for t in first["output"][0]["tools"]] == [
        "greet_everyone",
        "get_boiling_point",
    ]
    assert first["output"][1]["output"] == "-100"
    assert "-100" in first["output"][2]["content"][0]["text"]
    assert mcp_server.seen.list_tools == 1

    second = create(
        client, model=MODEL, input=QUESTION, previous_response_id=first["id"], tools=tools
    )
    assert [i["type"] for i in second["output"]] == ["message"]
    assert "-100" in second["output"][0]["content"][0]["text"]
    assert mcp_server.seen.list_tools == 1  # not listed again
    assert tool_names(upstream.requests[-1]) == ["greet_everyone", "get_boiling_point"]


def test_parallel_calls_and_a_later_call(client, upstream, mcp_server):
    upstream.script(
        Turn(tool_calls=[BOILING, ("greet_everyone", {"url": "https://example.org"})]),
        Turn(tool_calls=[("get_boiling_point", {"liquid_name": "water", "celsius": False})]),
        Turn(text="Done."),
    )
    final, _ = stream(client, model=MODEL, input="go", tools=[mcp_tool(mcp_server.sse_url)])
    kinds = [i["type"] for i in final["output"]]
    assert kinds == ["mcp_list_tools", "mcp_call", "mcp_call", "mcp_call", "message"]
    outputs = [i["output"] for i in final["output"][1:4]]
    assert outputs == ["-100", "Hello, everyone at https://example.org!", "212"]
    assert len(upstream.requests) == 3
    second = upstream.requests[1]["messages"]
    # each call, then its result
    assert [m["role"] for m in second] == ["user", "assistant", "tool", "assistant", "tool"]
    assert [m["content"] for m in second if m["role"] == "tool"] == outputs[:2]
    assert [m["role"] for m in upstream.requests[2]["messages"]][-2:] == ["assistant", "tool"]
    assert mcp_server.seen.list_tools == 1


def test_tool_error_is_reported_and_the_loop_continues(client, upstream, mcp_server):
    upstream.script(
        Turn(tool_calls=[("explode", {"reason": "kaboom"})]), Turn(text="The tool failed.")
    )
    final, events = stream(client, model=MODEL, input="x", tools=[mcp_tool(mcp_server.http_url)])
    assert final["status"] == "completed"
    call = final["output"][1]
    assert call["status"] == "failed" and call["output"] is None
    assert call["error"]["type"] == "mcp_tool_execution_error"
    assert "kaboom" in json.dumps(call["error"])
    assert "response.mcp_call.failed" in item_events(events, call["id"])
    tool_message = upstream.requests[1]["messages"][-1]
    assert tool_message["role"] == "tool" and "kaboom" in tool_message["content"]
    assert final["output"][2]["content"][0]["text"] == "The tool failed."


def test_invalid_arguments_fail_the_call_not_the_response(client, upstream, mcp_server):
    upstream.script(Turn(tool_calls=[("greet_everyone", "{not json")]), Turn(text="Sorry."))
    final, _ = stream(client, model=MODEL, input="x", tools=[mcp_tool(mcp_server.http_url)])
    call = final["output"][1]
    assert call["status"] == "failed" and call["error"]["type"] == "mcp_protocol_error"
    assert final["status"] == "completed" and not mcp_server.seen.calls


def test_max_tool_calls_counts_mcp_calls(client, upstream, mcp_server):
    upstream.script(Turn(tool_calls=[BOILING, ("greet_everyone", {"url": "u"})]), Turn(text="ok"))
    final = create(
        client, model=MODEL, input="x", tools=[mcp_tool(mcp_server.http_url)], max_tool_calls=1
    )
    assert [i["type"] for i in final["output"]] == ["mcp_list_tools", "mcp_call", "message"]
    assert mcp_server.seen.calls == [BOILING]
    assert upstream.requests[1]["tool_choice"] == "none"  # the budget is spent


def test_iteration_limit(loom_env, upstream, mcp_server):
    """A model that keeps calling tools stops at `max_tool_iterations` model calls."""
    with run_loom({**loom_env, "LOOM_MAX_TOOL_ITERATIONS": "2"}) as loom:
        client = openai.OpenAI(base_url=f"{loom.url}/v1", api_key="x", max_retries=0)
        upstream.default = Turn(tool_calls=[BOILING])
        final, _ = stream(client, model=MODEL, input="x", tools=[mcp_tool(mcp_server.http_url)])
    assert final["status"] == "incomplete"
    assert final["incomplete_details"] == {"reason": "max_messages"}
    assert [i["type"] for i in final["output"]] == ["mcp_list_tools", "mcp_call"]
    assert len(upstream.requests) == 2 and len(mcp_server.seen.calls) == 1


# -- what the model sees ----------------------------------------------------------------------


@pytest.mark.parametrize("allowed", [["get_boiling_point"], {"tool_names": ["get_boiling_point"]}])
def test_allowed_tools(client, upstream, mcp_server, allowed):
    upstream.script(Turn(text="ok"))
    response = create(
        client,
        model=MODEL,
        input="x",
        tools=[mcp_tool(mcp_server.http_url, allowed_tools=allowed)],
    )
    assert tool_names(upstream.requests[0]) == ["get_boiling_point"]
    assert [t["name"] for t in response["output"][0]["tools"]] == ["get_boiling_point"]
    assert response["tools"][0]["allowed_tools"] == allowed


def test_read_only_filter(client, upstream, mcp_server):
    upstream.script(Turn(text="ok"))
    create(
        client,
        model=MODEL,
        input="x",
        tools=[mcp_tool(mcp_server.http_url, allowed_tools={"read_only": True})],
    )
    assert tool_names(upstream.requests[0]) == ["greet_everyone"]


def test_input_schemas_reach_the_model_unchanged(client, upstream, mcp_server):
    upstream.script(Turn(text="ok"))
    response = create(
        client, model=MODEL, input="x", tools=[mcp_tool(mcp_server.http_url), WEATHER_TOOL]
    )
    listed = {t["name"]: t for t in response["output"][0]["tools"]}
    sent = {t["function"]["name"]: t["function"] for t in upstream.requests[0]["tools"]}
    assert set(sent) == set(listed) | {"get_weather"}
    for name, tool in listed.items():
        assert sent[name]["parameters"] == tool["input_schema"]
    order = sent["place_order"]["parameters"]
    assert order["properties"]["address"] == {"$ref": "#/$defs/Address"}
    assert order["properties"]["orders"]["type"] == "array"
    assert order["properties"]["orders"]["items"] == {"$ref": "#/$defs/Order"}
    assert set(order["$defs"]) == {"Address", "Order"}
    assert order["$defs"]["Address"]["properties"]["tags"]["type"] == "array"
    assert sent["get_boiling_point"]["description"].strip().startswith("Returns the boiling")
    assert listed["greet_everyone"]["annotations"] == {"readOnlyHint": True}


def test_mixed_function_and_mcp_calls(client, upstream, mcp_server):
    upstream.script(
        Turn(tool_calls=[BOILING, ("get_weather", {"location": "Paris"})]),
        Turn(text="Both done."),
    )
    tools = [mcp_tool(mcp_server.http_url), WEATHER_TOOL]
    first, _ = stream(client, model=MODEL, input="x", tools=tools)
    # the client's function call ends the turn; the MCP call still ran
    assert [i["type"] for i in first["output"]] == ["mcp_list_tools", "function_call", "mcp_call"]
    assert first["status"] == "completed" and len(upstream.requests) == 1
    function_call = first["output"][1]
    assert first["output"][2]["output"] == "-100"
    second = create(
        client,
        model=MODEL,
        previous_response_id=first["id"],
        tools=tools,
        input=[
            {
                "type": "function_call_output",
                "call_id": function_call["call_id"],
                "output": "sunny",
            }
        ],
    )
    assert second["output"][-1]["content"][0]["text"] == "Both done."
    messages = upstream.requests[1]["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "tool"]
    assert {m["content"] for m in messages[2:]} == {"-100", "sunny"}
    assert mcp_server.seen.list_tools == 1


# -- servers that fail ------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("streaming", [False, True])
def test_unreachable_server(client, upstream, streaming):
    upstream.script(Turn(text="I could not reach the tools."))
    tools = [mcp_tool(f"http://127.0.0.1:{_closed_port()}/mcp")]
    if streaming:
        final, events = stream(client, model=MODEL, input="x", tools=tools)
        assert "response.mcp_list_tools.failed" in [e["type"] for e in events]
    else:
        final = create(client, model=MODEL, input="x", tools=tools)
    assert final["status"] == "completed"
    listing = final["output"][0]
    assert listing["type"] == "mcp_list_tools" and listing["tools"] == []
    assert "MCP server 'tools'" in listing["error"] and "unreachable" in listing["error"]
    assert "tools" not in upstream.requests[0]  # no tools to offer


def test_auth_rejected(client, upstream, mcp_auth_server):
    upstream.script(Turn(text="no tools"))
    final, events = stream(
        client,
        model=MODEL,
        input="x",
        tools=[mcp_tool(mcp_auth_server.http_url, authorization="wrong-token")],
    )
    listing = final["output"][0]
    assert "rejected the credentials (HTTP 401)" in listing["error"]
    assert "wrong-token" not in json.dumps(events)
    assert final["status"] == "completed"


@pytest.mark.parametrize("transport", ["http_url", "sse_url"])
def test_auth_accepted_and_headers_sent(client, upstream, mcp_auth_server, transport):
    token = mcp_auth_server.token
    upstream.script(Turn(tool_calls=[BOILING]), Turn(text="-100"))
    tool = mcp_tool(
        getattr(mcp_auth_server, transport), authorization=token, headers={"X-Tenant": "acme"}
    )
    final = create(client, model=MODEL, input="x", tools=[tool])
    assert final["output"][1]["output"] == "-100"
    seen = mcp_auth_server.seen
    assert seen.authorization and set(seen.authorization) == {f"Bearer {token}"}
    assert set(seen.tenant) == {"acme"}
    # never echoed
    (echo,) = final["tools"]
    assert "authorization" not in echo and "headers" not in echo
    assert echo["server_url"] == tool["server_url"] and echo["require_approval"] == "never"


def test_secrets_are_never_stored_or_logged(client, upstream, mcp_auth_server, loom_env, caplog):
    token = mcp_auth_server.token
    caplog.set_level(logging.DEBUG)  # every logger, Loom's and the libraries' it uses
    upstream.script(Turn(tool_calls=[BOILING]), Turn(text="-100"))
    tool = mcp_tool(mcp_auth_server.http_url, authorization=token, headers={"X-Tenant": "acme"})
    final, events = stream(client, model=MODEL, input="x", tools=[tool])
    assert final["output"][1]["output"] == "-100"
    retrieved = client.responses.retrieve(final["id"]).model_dump_json()
    assert token not in retrieved and token not in json.dumps(events)
    db = Path(loom_env["LOOM_DB_URL"].split("///", 1)[1])
    stored = b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*"))  # with the WAL
    assert final["id"].encode() in stored  # the response is in there; the secrets are not
    assert token.encode() not in stored and b"acme" not in stored
    # the capture did see the MCP client and HTTP layers at DEBUG
    assert any(r.name.startswith("mcp.client") for r in caplog.records)
    assert token not in caplog.text


def test_silent_server_times_out(loom_env, upstream):
    """A server that accepts connections and never answers cannot hang a turn."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted: list[socket.socket] = []

    def accept_forever():
        while True:
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept_forever, daemon=True).start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/mcp"
    try:
        with run_loom({**loom_env, "LOOM_MCP_TIMEOUT": "1"}) as loom:
            client = openai.OpenAI(base_url=f"{loom.url}/v1", api_key="x", max_retries=0)
            upstream.script(Turn(text="no tools"))
            started = time.monotonic()
            final = create(client, model=MODEL, input="x", tools=[mcp_tool(url)])
            assert time.monotonic() - started < 8
    finally:
        listener.close()
        for sock in accepted:
            sock.close()
    assert final["status"] == "completed"
    assert "did not answer" in final["output"][0]["error"]


# -- bad requests -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tool", "param"),
    [
        ({"type": "mcp", "server_url": "http://x/mcp"}, "tools[0].server_label"),
        ({"type": "mcp", "server_label": "a"}, "tools[0].server_url"),
        ({"type": "mcp", "server_label": "a", "server_url": "ftp://x"}, "tools[0].server_url"),
        (
            {"type": "mcp", "server_label": "a", "server_url": "http://x", "headers": {"a": 1}},
            "tools[0].headers",
        ),
        (
            {"type": "mcp", "server_label": "a", "server_url": "http://x", "allowed_tools": 3},
            "tools[0].allowed_tools",
        ),
        (
            {"type": "mcp", "server_label": "a", "server_url": "http://x", "require_approval": 1},
            "tools[0].require_approval",
        ),
    ],
)
def test_bad_mcp_tool_is_400(client, upstream, tool, param):
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model=MODEL, input="x", tools=[tool])
    assert info.value.body["param"] == param
    assert not upstream.requests
