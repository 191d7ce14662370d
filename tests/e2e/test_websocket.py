"""WebSocket mode on GET /v1/responses, end to end: a real socket, Loom under uvicorn, and
the fake upstream. Cases follow OpenAI's WebSocket-mode guide (and the Open Responses
compliance suite's WebSocket tests): sequential responses, `previous_response_id` from the
connection's memory with `store: false`, a failed continuation evicting it, `generate:
false`, `stream_id` lanes, the error codes, limits, disconnects, and tools over a socket."""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests.conftest import run_loom
from tests.e2e.test_mcp import BOILING, QUESTION
from tests.e2e.test_mcp_approvals import RECORDED_TOOLS, answer, tools_for
from tests.support.keys import ALICE_KEY, BOB_KEY, authed_env, http
from tests.support.upstream import Recordings, Turn
from tests.support.ws import create, read_event, read_response, send_create, validated, ws_url

pytest_plugins = ["tests.support.mcp_server"]  # the MCP server fixtures

MODEL = "openai/gpt-4o"
TOOL = {
    "type": "function",
    "name": "get_weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}


@pytest.fixture
def ws(loom_server, upstream):
    with connect(ws_url(loom_server), open_timeout=10) as socket:
        yield socket


def test_create_streams_the_sse_events_and_stores(ws, loom_server, upstream):
    upstream.script(Turn(text="Hello over a socket."))
    final = create(ws, model=MODEL, input="hi")
    assert final["status"] == "completed"
    assert final["output"][0]["content"][0]["text"] == "Hello over a socket."
    stored = httpx.get(f"{loom_server.url}/v1/responses/{final['id']}").json()
    assert stored["output"] == final["output"]
    assert upstream.requests[-1]["messages"] == [{"role": "user", "content": "hi"}]


def test_sequential_responses_chain_in_memory_with_store_false(ws, loom_server, upstream):
    upstream.script(Turn(text="One."), Turn(text="Two."), Turn(text="Three."))
    first = create(ws, model=MODEL, input="a", store=False)
    second = create(ws, model=MODEL, input="b", store=False, previous_response_id=first["id"])
    third = create(ws, model=MODEL, input="c", store=False, previous_response_id=second["id"])
    assert third["previous_response_id"] == second["id"]
    assert [m["content"] for m in upstream.requests[-1]["messages"]] == [
        "a",
        "One.",
        "b",
        "Two.",
        "c",
    ]
    # store=false: nothing was written, so HTTP cannot continue from it.
    missing = httpx.get(f"{loom_server.url}/v1/responses/{first['id']}")
    assert missing.status_code == 404


def test_previous_response_not_found(ws, upstream):
    send_create(ws, model=MODEL, input="x", previous_response_id="resp_nope")
    (event,) = read_response(ws)
    assert event["type"] == "error" and event["status"] == 400
    assert event["error"]["code"] == "previous_response_not_found"
    assert event["error"]["param"] == "previous_response_id"
    # The connection stays usable.
    upstream.script(Turn(text="still here"))
    assert create(ws, model=MODEL, input="y")["status"] == "completed"


def test_failed_continuation_evicts_the_cached_response(ws, upstream):
    upstream.script(Turn(text="First."))
    first = create(ws, model=MODEL, input="a", store=False)
    bad = [{"type": "item_reference", "id": "msg_unknown"}]
    send_create(ws, model=MODEL, input=bad, store=False, previous_response_id=first["id"])
    (error,) = read_response(ws)
    assert error["type"] == "error" and error["error"]["param"] == "input[0].id"
    send_create(ws, model=MODEL, input="again", store=False, previous_response_id=first["id"])
    (gone,) = read_response(ws)
    assert gone["error"]["code"] == "previous_response_not_found"


def test_failed_turn_evicts_too(ws, upstream):
    upstream.script(Turn(text="First."), Turn(text="partial words here", fail_after=2))
    first = create(ws, model=MODEL, input="a", store=False)
    failed = create(ws, model=MODEL, input="b", store=False, previous_response_id=first["id"])
    assert failed["status"] == "failed"
    send_create(ws, model=MODEL, input="c", store=False, previous_response_id=first["id"])
    (gone,) = read_response(ws)
    assert gone["error"]["code"] == "previous_response_not_found"


def test_generate_false_warms_up_without_calling_the_model(ws, upstream):
    warm = create(
        ws,
        model=MODEL,
        generate=False,
        store=False,
        instructions="Be brief.",
        input=[{"role": "developer", "content": "Context: tests."}],
        tools=[TOOL],
    )
    assert warm["status"] == "completed" and warm["output"] == []
    assert warm["tools"][0]["name"] == "get_weather"
    assert upstream.requests == []
    upstream.script(Turn(text="Brief."))
    final = create(ws, model=MODEL, input="go", store=False, previous_response_id=warm["id"])
    assert final["status"] == "completed"
    assert upstream.requests[-1]["messages"] == [
        {"role": "system", "content": "Context: tests."},
        {"role": "user", "content": "go"},
    ]


def test_stream_id_lanes_run_side_by_side_and_in_order(ws, upstream):
    # Lane "slow" gets the slow answer; "fast" overtakes it; each lane is FIFO.
    upstream.script(
        Turn(text="slow one two three four five", delay=0.05),
        Turn(text="fast"),
        Turn(text="slow again"),
    )
    send_create(ws, model=MODEL, input="s1", stream_id="slow")
    first = read_event(ws)
    assert first["stream_id"] == "slow" and first["type"] == "response.created"
    send_create(ws, model=MODEL, input="f1", stream_id="fast")
    send_create(ws, model=MODEL, input="s2", stream_id="slow")
    by_lane: dict[str, list] = {"slow": [first], "fast": []}
    order = []
    while sum(e["type"] == "response.completed" for e in by_lane["slow"]) < 2:
        event = read_event(ws)
        by_lane[event["stream_id"]].append(event)
        if event["type"] == "response.completed":
            order.append((event["stream_id"], event["response"]["id"]))
    assert order[0][0] == "fast"  # the fast lane did not wait for the slow one
    slow = by_lane["slow"]
    split = next(i for i, e in enumerate(slow) if e["type"] == "response.completed") + 1
    s1, s2 = validated(slow[:split], "slow"), validated(slow[split:], "slow")
    validated(by_lane["fast"], "fast")
    assert s1["output"][0]["content"][0]["text"].startswith("slow one")
    assert s2["output"][0]["content"][0]["text"] == "slow again"


def test_bad_messages_get_error_events_naming_the_field(ws, upstream):
    ws.send(json.dumps({"type": "session.update"}))
    event = read_event(ws)
    assert event["type"] == "error" and event["error"]["param"] == "type"
    send_create(ws, model=MODEL, input="x", temperature=5)
    event = read_event(ws)
    assert event["status"] == 400 and event["error"]["param"] == "temperature"
    ws.send("not json")
    assert read_event(ws)["type"] == "error"
    send_create(ws, model=MODEL, input="x", background=True)
    event = read_event(ws)
    assert event["status"] == 400 and event["error"]["param"] == "background"
    send_create(ws, model="openai/no-such-model", input="x")
    event = read_event(ws)
    assert event["status"] == 404 and event["error"]["code"] == "model_not_found"


def test_disconnect_finishes_and_stores_the_turn(loom_server, upstream):
    upstream.script(Turn(text="a b c d e f g h", delay=0.05))
    with connect(ws_url(loom_server)) as socket:
        send_create(socket, model=MODEL, input="slow please")
        created = read_event(socket)
        response_id = created["response"]["id"]
    deadline = time.monotonic() + 20
    while True:  # poll the store for the turn the server keeps running
        stored = httpx.get(f"{loom_server.url}/v1/responses/{response_id}")
        if stored.status_code == 200 and stored.json()["status"] == "completed":
            break
        assert time.monotonic() < deadline, "the turn was not stored after the disconnect"
    assert stored.json()["output"][0]["content"][0]["text"] == "a b c d e f g h"


def test_function_tool_chain_over_websocket(ws, upstream):
    upstream.script(
        Turn(tool_calls=[("get_weather", {"city": "Oslo"})]),
        Turn(text="Cold in Oslo."),
    )
    first = create(ws, model=MODEL, input="Weather?", tools=[TOOL], store=False)
    (call,) = first["output"]
    assert call["type"] == "function_call"
    output = {"type": "function_call_output", "call_id": call["call_id"], "output": "-3C"}
    second = create(
        ws, model=MODEL, input=[output], tools=[TOOL], store=False, previous_response_id=first["id"]
    )
    assert second["output"][0]["content"][0]["text"] == "Cold in Oslo."
    messages = upstream.requests[-1]["messages"]
    assert messages[1]["tool_calls"][0]["id"] == call["call_id"]
    assert messages[2] == {"role": "tool", "tool_call_id": call["call_id"], "content": "-3C"}


def test_conversation_over_websocket(ws, client, upstream):
    conversation = client.conversations.create()
    upstream.script(Turn(text="Noted."), Turn(text="You said hello."))
    create(ws, model=MODEL, input="hello", conversation=conversation.id)
    create(ws, model=MODEL, input="what did I say?", conversation=conversation.id)
    items = client.conversations.items.list(conversation.id, order="asc").data
    assert [i.type for i in items] == ["message"] * 4
    assert upstream.requests[-1]["messages"][0] == {"role": "user", "content": "hello"}


def test_openai_sdk_websocket_client(loom_server, upstream):
    upstream.script(Turn(text="From the SDK."))
    client = openai.OpenAI(base_url=f"{loom_server.url}/v1", api_key="x", max_retries=0)
    events = []
    with client.responses.connect() as connection:
        connection.send({"type": "response.create", "model": MODEL, "input": "hi"})
        for event in connection:
            events.append(event.model_dump(mode="json", exclude_unset=True, by_alias=True))
            if event.type == "response.completed":
                break
    final = validated(events)
    assert final["output"][0]["content"][0]["text"] == "From the SDK."


# -- limits and fallback: Loom started with other settings -------------------------------------


@pytest.fixture(scope="module")
def limited_loom(loom_env):
    env = {**loom_env, "LOOM_WEBSOCKET_MAX_CONNECTIONS": "1", "LOOM_WEBSOCKET_MAX_AGE": "1e-6"}
    with run_loom(env) as server:
        yield server


def test_connection_limit_reached(limited_loom, upstream):
    with connect(ws_url(limited_loom)) as first:
        with connect(ws_url(limited_loom)) as second:
            event = read_event(second)
            assert event["type"] == "error"
            assert event["error"]["code"] == "websocket_connection_limit_reached"
            with pytest.raises(ConnectionClosed):
                second.recv(timeout=10)
        # The first connection is over its (tiny) maximum age: its next create is refused.
        send_create(first, model=MODEL, input="x")
        event = read_event(first)
        assert event["error"]["code"] == "websocket_connection_limit_reached"
        with pytest.raises(ConnectionClosed):
            first.recv(timeout=10)


@pytest.fixture(scope="module")
def http_only_loom(loom_env):
    with run_loom({**loom_env, "LOOM_WEBSOCKET_ENABLED": "false"}) as server:
        yield server


def test_disabled_websocket_answers_426_and_http_still_works(http_only_loom, upstream):
    with pytest.raises(InvalidStatus) as refused:
        connect(ws_url(http_only_loom), open_timeout=10)
    assert refused.value.response.status_code == 426
    upstream.script(Turn(text="Over HTTP."))
    response = httpx.post(
        f"{http_only_loom.url}/v1/responses", json={"model": MODEL, "input": "x"}, timeout=30
    )
    assert response.json()["output"][0]["content"][0]["text"] == "Over HTTP."


def test_mcp_approval_flow_over_websocket_with_store_false(ws, upstream, mcp_server):
    """Replayed from the recordings of a real approval flow; the continuation comes from
    the connection's memory, since nothing was stored."""
    upstream.recordings = Recordings()
    tools = tools_for(mcp_server.http_url, require_approval="always", allowed_tools=RECORDED_TOOLS)
    first = create(ws, model=MODEL, input=QUESTION, tools=tools, store=False)
    listing, request = first["output"]
    assert (listing["type"], request["type"]) == ("mcp_list_tools", "mcp_approval_request")
    assert not mcp_server.seen.calls
    second = create(
        ws,
        model=MODEL,
        input=[answer(request["id"], True)],
        tools=tools,
        store=False,
        previous_response_id=first["id"],
    )
    call, message = second["output"]
    assert call["type"] == "mcp_call" and call["output"] == "-100"
    assert "-100" in message["content"][0]["text"]
    assert mcp_server.seen.calls == [BOILING]


def test_continues_a_stored_http_response_and_compacts_over_websocket(ws, client, upstream):
    upstream.script(Turn(text="Stored over HTTP."))
    first = client.responses.create(model=MODEL, input="start")  # not in the socket's memory
    long_input = "Tell me more. " * 400
    upstream.script(Turn(text="A summary."), Turn(text="Continued."))
    final = create(
        ws,
        model=MODEL,
        input=long_input,
        previous_response_id=first.id,
        context_management=[{"type": "compaction", "compact_threshold": 1000}],
    )
    compaction, message = final["output"]
    assert compaction["type"] == "compaction" and message["type"] == "message"
    summary_call, answer_call = upstream.requests[-2:]
    assert [m["content"] for m in summary_call["messages"][:2]] == ["start", "Stored over HTTP."]
    assert answer_call["messages"][-1]["content"].endswith("A summary.")


def test_binary_messages_and_many_lanes(ws, upstream):
    upstream.default = Turn(text="ok")
    ws.send(json.dumps({"type": "response.create", "model": MODEL, "input": "b"}).encode())
    assert validated(read_response(ws))["status"] == "completed"
    for n in range(5):  # a fresh lane per request: each ends when its queue is empty
        final = create(ws, model=MODEL, input=f"lane {n}", stream_id=f"lane-{n}")
        assert final["status"] == "completed"


@pytest.fixture(scope="module")
def authed_loom(loom_env, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("ws-auth")
    env = authed_env(loom_env, workdir, f"sqlite+aiosqlite:///{workdir / 'loom.db'}")
    with run_loom(env) as server:
        yield server


def test_websocket_needs_a_key_and_keeps_owners_apart(authed_loom, upstream):
    with pytest.raises(InvalidStatus) as refused:  # no key: the upgrade is refused
        connect(ws_url(authed_loom), open_timeout=10)
    assert refused.value.response.status_code == 403
    upstream.script(Turn(text="Alice's."))
    alice = {"Authorization": f"Bearer {ALICE_KEY}"}
    with connect(ws_url(authed_loom), additional_headers=alice) as socket:
        mine = create(socket, model=MODEL, input="mine")
    with http(authed_loom, ALICE_KEY) as client:
        assert client.get(f"/v1/responses/{mine['id']}").status_code == 200
    bob = {"Authorization": f"Bearer {BOB_KEY}"}
    with connect(ws_url(authed_loom), additional_headers=bob) as socket:
        send_create(socket, model=MODEL, input="steal", previous_response_id=mine["id"])
        (error,) = read_response(socket)
        assert error["error"]["code"] == "previous_response_not_found"
