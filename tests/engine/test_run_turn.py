"""`run_turn` without a server: each `Decision`, the events held until the model answers,
and a model call that breaks off mid-stream."""

from __future__ import annotations

import asyncio

import pytest

from loom.engine.loop import run_turn
from loom.errors import UpstreamError
from loom.testing import InMemoryMcp, Reply, ScriptedProvider
from tests.engine.conftest import all_events, mcp_tool, on_the_wire, prepare
from tests.support.stream_validator import validate_stream

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}


def calculator() -> InMemoryMcp:
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    return InMemoryMcp({"calc": {"add": add}})


def types_of(events) -> list[str]:
    return [e["type"] for e in events]


async def test_final_answer_completes_with_the_text(stores):
    provider = ScriptedProvider(Reply(text="the sky is blue"))
    events = await all_events(await prepare(stores, provider, {"input": "why?"}))
    final = validate_stream(events)
    assert final["status"] == "completed"
    assert [i["type"] for i in final["output"]] == ["message"]
    assert final["output"][0]["content"][0]["text"] == "the sky is blue"
    assert final["usage"]["input_tokens"] == 11
    assert len(provider.requests) == 1
    assert provider.requests[0]["messages"][-1] == {"role": "user", "content": "why?"}


async def test_client_tool_call_ends_the_turn_with_the_call(stores):
    provider = ScriptedProvider(Reply(tool_calls=[("get_weather", {"city": "Paris"})]))
    body = {"input": "weather?", "tools": [WEATHER]}
    final = validate_stream(await all_events(await prepare(stores, provider, body)))
    assert final["status"] == "completed"
    (call,) = final["output"]
    assert (call["type"], call["name"], call["arguments"]) == (
        "function_call",
        "get_weather",
        '{"city": "Paris"}',
    )
    assert len(provider.requests) == 1  # the client runs the call, not the server


async def test_length_makes_the_response_incomplete(stores):
    provider = ScriptedProvider(Reply(text="cut short", finish_reason="length"))
    final = validate_stream(await all_events(await prepare(stores, provider, {"input": "x"})))
    assert final["status"] == "incomplete"
    assert final["incomplete_details"] == {"reason": "max_output_tokens"}
    assert final["output"][0]["content"][0]["text"] == "cut short"


async def test_mcp_call_runs_and_the_model_is_called_again(stores):
    mcp = calculator()
    provider = ScriptedProvider(Reply(tool_calls=[("add", {"a": 2, "b": 3})]), Reply(text="5"))
    body = {"input": "2+3?", "tools": [mcp_tool("calc")]}
    final = validate_stream(await all_events(await prepare(stores, provider, body, mcp=mcp)))
    assert final["status"] == "completed"
    assert [i["type"] for i in final["output"]] == ["mcp_list_tools", "mcp_call", "message"]
    assert final["output"][1]["output"] == "5"
    assert mcp.calls == [("calc", "add", {"a": 2, "b": 3})]
    # The second model call reads the call's result.
    assert len(provider.requests) == 2
    assert provider.requests[1]["messages"][-1] == {
        "role": "tool",
        "tool_call_id": provider.requests[1]["messages"][-2]["tool_calls"][0]["id"],
        "content": "5",
    }


async def test_iteration_limit_makes_the_response_incomplete(stores):
    mcp = calculator()
    call = Reply(tool_calls=[("add", {"a": 1, "b": 1})])
    provider = ScriptedProvider(call, Reply(tool_calls=[("add", {"a": 2, "b": 2})]))
    body = {"input": "loop", "tools": [mcp_tool("calc")]}
    prepared = await prepare(stores, provider, body, mcp=mcp, max_tool_iterations=2)
    final = validate_stream(await all_events(prepared))
    assert final["status"] == "incomplete"
    assert final["incomplete_details"] == {"reason": "max_messages"}
    assert len(provider.requests) == 2
    # The last model call's MCP call is not run: no model call would read its result.
    assert [c[2] for c in mcp.calls] == [{"a": 1, "b": 1}]
    assert [i["type"] for i in final["output"]] == ["mcp_list_tools", "mcp_call"]


async def test_approval_required_stops_before_the_call(stores):
    mcp = calculator()
    provider = ScriptedProvider(Reply(tool_calls=[("add", {"a": 2, "b": 3})]))
    body = {"input": "2+3?", "tools": [mcp_tool("calc", require_approval="always")]}
    final = validate_stream(await all_events(await prepare(stores, provider, body, mcp=mcp)))
    assert final["status"] == "completed"
    assert [i["type"] for i in final["output"]] == ["mcp_list_tools", "mcp_approval_request"]
    request = final["output"][1]
    assert (request["name"], request["arguments"]) == ("add", '{"a": 2, "b": 3}')
    assert mcp.calls == []


async def test_events_are_held_until_the_model_answers(stores):
    mcp = calculator()
    release = asyncio.Event()
    provider = ScriptedProvider(Reply(text="ok", release=release))
    body = {"input": "hi", "tools": [mcp_tool("calc")]}
    turn = (await prepare(stores, provider, body, mcp=mcp)).turn
    received = []

    async def consume():
        async for event in run_turn(turn):
            received.append(on_the_wire(event))

    task = asyncio.create_task(consume())
    await provider.wait_for_calls(1)
    # The MCP listing is done and the model was called, but nothing has gone out yet.
    assert mcp.listings == ["calc"]
    assert received == []
    release.set()
    await task
    assert types_of(received)[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.mcp_list_tools.in_progress",
    ]
    assert validate_stream(received)["status"] == "completed"


async def test_a_refused_first_call_raises_and_emits_nothing(stores):
    mcp = calculator()
    provider = ScriptedProvider(Reply(error=UpstreamError("upstream says no", status=400)))
    body = {"input": "hi", "tools": [mcp_tool("calc")]}
    events = run_turn((await prepare(stores, provider, body, mcp=mcp)).turn)
    with pytest.raises(UpstreamError, match="upstream says no"):
        await anext(events)
    assert mcp.listings == ["calc"]  # the held listing events were never sent


async def test_a_stream_that_breaks_off_aborts_its_item_and_fails(stores):
    broken = Reply(text="one two three four", fail_after=3, error=UpstreamError("reset by peer"))
    provider = ScriptedProvider(broken)
    events = await all_events(await prepare(stores, provider, {"input": "count"}))
    final = validate_stream(events)
    assert final["status"] == "failed"
    assert final["error"] == {"code": "server_error", "message": "reset by peer"}
    (message,) = final["output"]
    assert message["status"] == "incomplete"
    assert message["content"][0]["text"] == "one two"
    assert types_of(events).count("response.output_item.done") == 1
