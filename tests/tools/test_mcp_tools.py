"""The pure rules of MCP tools: parsing, secrets, allowed tools, approvals, results, and
how MCP items reach the model."""

from __future__ import annotations

import pytest
from mcp import types

from loom.engine.approvals import approved_calls
from loom.engine.chat_messages import items_to_messages
from loom.engine.mcp_steps import reuse_listings
from loom.errors import InvalidRequestError
from loom.tools.mcp_tools import call_outcome, chat_tool, error_text, parse_mcp_tool
from loom.tools.toolset import build_toolset

URL = "https://mcp.example.com/mcp"
TOOLS = [
    {
        "name": "read",
        "description": "r",
        "input_schema": {"type": "object"},
        "annotations": {"readOnlyHint": True},
    },
    {"name": "write", "description": "w", "input_schema": {"type": "object"}, "annotations": None},
]


def server(**extra):
    return parse_mcp_tool(
        {"type": "mcp", "server_label": "s", "server_url": URL, **extra}, "tools[0]"
    )


def test_secrets_are_kept_out_of_the_echo_and_repr():
    srv, echo = server(authorization="tok-123", headers={"X-Key": "k-456", "Authorization": "x"})
    assert srv.headers == {"X-Key": "k-456", "Authorization": "Bearer tok-123"}
    assert echo == {
        "type": "mcp",
        "server_label": "s",
        "server_url": URL,
        "allowed_tools": None,
        "require_approval": "always",
        "server_description": None,
    }
    assert "tok-123" not in repr(srv) and "k-456" not in repr(srv)


def test_transport_choice():
    assert server()[0].uses_sse is False
    assert parse_mcp_tool(
        {"type": "mcp", "server_label": "s", "server_url": "http://h:1/sse"}, "t"
    )[0].uses_sse


@pytest.mark.parametrize(
    ("policy", "needs"),
    [
        (None, {"read": True, "write": True}),  # OpenAI's default: ask
        ("always", {"read": True, "write": True}),
        ("never", {"read": False, "write": False}),
        ({"never": {"tool_names": ["read"]}}, {"read": False, "write": True}),
        ({"always": {"tool_names": ["write"]}}, {"read": False, "write": True}),
        ({"never": {"read_only": True}}, {"read": False, "write": True}),
        (
            {"always": {"tool_names": ["write"]}, "never": {"tool_names": ["read"]}},
            {"read": False, "write": True},
        ),
    ],
)
def test_require_approval(policy, needs):
    srv, echo = server(require_approval=policy)
    assert {t["name"]: srv.needs_approval(t) for t in TOOLS} == needs
    assert echo["require_approval"] == (policy or "always")


@pytest.mark.parametrize(
    ("allowed", "names"),
    [
        (None, ["read", "write"]),
        (["write"], ["write"]),
        ({"tool_names": ["read"]}, ["read"]),
        ({"read_only": True}, ["read"]),
        ({"read_only": False}, ["write"]),
        ({"tool_names": ["read"], "read_only": False}, []),
        ({}, ["read", "write"]),
    ],
)
def test_allowed_tools(allowed, names):
    srv, _ = server(allowed_tools=allowed)
    assert [t["name"] for t in TOOLS if srv.allows(t)] == names


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"server_label": "1abc"}, "tools[0].server_label"),
        ({"server_url": "not a url"}, "tools[0].server_url"),
        ({"server_url": None, "connector_id": "connector_gmail"}, "tools[0].connector_id"),
        ({"authorization": 5}, "tools[0].authorization"),
        ({"allowed_tools": [1]}, "tools[0].allowed_tools"),
        ({"allowed_tools": {"tool_names": "x"}}, "tools[0].allowed_tools.tool_names"),
        ({"require_approval": "sometimes"}, "tools[0].require_approval"),
        ({"require_approval": {"never": ["x"]}}, "tools[0].require_approval.never"),
        ({"server_description": 3}, "tools[0].server_description"),
    ],
)
def test_bad_tools_name_the_field(extra, param):
    with pytest.raises(InvalidRequestError) as info:
        server(**extra)
    assert info.value.param == param


def test_toolset_with_mcp_servers():
    raw = {"type": "mcp", "server_label": "s", "server_url": URL}
    with pytest.raises(InvalidRequestError) as info:
        build_toolset([raw, raw], None)
    assert info.value.param == "tools[1].server_label"

    toolset = build_toolset([raw], "required")  # tools arrive once listed
    assert toolset.chat_tool_choice == "required" and toolset.chat_tools == []
    toolset.add_mcp_listing(toolset.mcp_servers["s"], TOOLS)
    assert [t["function"]["name"] for t in toolset.chat_tools] == ["read", "write"]
    assert toolset.mcp_tool("write")[0].label == "s" and toolset.mcp_tool("nope") is None
    assert toolset.unlisted_servers() == []

    forced = build_toolset([raw], {"type": "mcp", "server_label": "s", "name": "write"})
    forced.add_mcp_listing(forced.mcp_servers["s"], TOOLS)
    assert [t["function"]["name"] for t in forced.chat_tools] == ["write"]
    assert forced.chat_tool_choice == {"type": "function", "function": {"name": "write"}}

    fn = {"type": "function", "name": "read"}
    choice = {
        "type": "allowed_tools",
        "mode": "auto",
        "tools": [{"type": "function", "name": "read"}, {"type": "mcp", "server_label": "s"}],
    }
    mixed = build_toolset([fn, raw], choice)
    mixed.add_mcp_listing(mixed.mcp_servers["s"], TOOLS)
    # the function keeps its name; the server's other tool joins
    assert [t["function"]["name"] for t in mixed.chat_tools] == ["read", "write"]
    assert mixed.mcp_tool("read") is None

    with pytest.raises(InvalidRequestError) as info:
        build_toolset([raw], {"type": "mcp", "server_label": "other"})
    assert info.value.param == "tool_choice.server_label"


def test_chat_tool_keeps_the_schema():
    schema = {
        "type": "object",
        "properties": {
            "a": {"$ref": "#/$defs/A"},
            "b": {"type": "array", "items": {"type": "integer"}},
        },
        "$defs": {"A": {"type": "object", "properties": {"x": {"type": "string"}}}},
    }
    tool = chat_tool({"name": "t", "description": "d", "input_schema": schema})
    assert tool == {
        "type": "function",
        "function": {"name": "t", "description": "d", "parameters": schema},
    }


def test_call_outcomes():
    text = types.CallToolResult(content=[types.TextContent(text="a"), types.TextContent(text="b")])
    assert call_outcome(text) == ("a\nb", None)
    structured = types.CallToolResult(content=[], structured_content={"x": 1})
    assert call_outcome(structured) == ('{"x": 1}', None)
    image = types.CallToolResult(content=[types.ImageContent(data="AAAA", mime_type="image/png")])
    output, _ = call_outcome(image)
    assert '"mimeType": "image/png"' in output
    failed = types.CallToolResult(content=[types.TextContent(text="boom")], is_error=True)
    output, error = call_outcome(failed)
    assert output is None
    assert error == {
        "type": "mcp_tool_execution_error",
        "content": [{"type": "text", "text": "boom"}],
    }
    assert error_text(error) == "boom"
    assert error_text({"type": "http_error", "code": 401, "message": "no"}) == "no"
    assert error_text("plain") == "plain"


def _history():
    request = {
        "type": "mcp_approval_request",
        "id": "mcpr_1",
        "server_label": "s",
        "name": "write",
        "arguments": "{}",
    }
    return [
        {
            "type": "message",
            "id": "m",
            "role": "user",
            "content": [{"type": "input_text", "text": "hi"}],
        },
        request,
    ]


def test_denied_calls_reach_the_model_as_refused():
    answer = {
        "type": "mcp_approval_response",
        "id": "a",
        "approval_request_id": "mcpr_1",
        "approve": False,
    }
    messages = items_to_messages([*_history(), answer])
    assert messages[1]["tool_calls"][0]["id"] == "mcpr_1"
    assert messages[2] == {
        "role": "tool",
        "tool_call_id": "mcpr_1",
        "content": "The user denied this tool call.",
    }
    approved = {**answer, "approve": True}
    assert len(items_to_messages([*_history(), approved])) == 1  # the mcp_call will show it
    failed_call = {
        "type": "mcp_call",
        "id": "mcp_1",
        "name": "write",
        "arguments": "{}",
        "output": None,
        "error": {"type": "mcp_tool_execution_error", "content": [{"type": "text", "text": "bad"}]},
    }
    assert items_to_messages([failed_call])[1]["content"] == "bad"


def test_approved_calls_are_matched_to_their_requests():
    toolset = build_toolset([{"type": "mcp", "server_label": "s", "server_url": URL}], None)
    answer = {
        "type": "mcp_approval_response",
        "id": "a",
        "approval_request_id": "mcpr_1",
        "approve": True,
    }
    (approved,) = approved_calls(_history(), [answer], toolset)
    assert approved.request["name"] == "write" and approved.server.label == "s"
    assert approved_calls(_history(), [{**answer, "approve": False}], toolset) == []
    with pytest.raises(InvalidRequestError) as info:
        approved_calls(
            _history(), [{"type": "message"}, {**answer, "approval_request_id": "x"}], toolset
        )
    assert info.value.param == "input[1].approval_request_id"
    with pytest.raises(InvalidRequestError):  # answered already
        approved_calls([*_history(), answer], [answer], toolset)
    with pytest.raises(InvalidRequestError) as info:  # the server is not in tools
        approved_calls(_history(), [answer], build_toolset([], None))
    assert "needs the MCP server 's'" in info.value.message


def test_listings_are_reused_from_history():
    toolset = build_toolset([{"type": "mcp", "server_label": "s", "server_url": URL}], None)
    history = [
        {
            "type": "mcp_list_tools",
            "id": "l1",
            "server_label": "s",
            "tools": TOOLS[:1],
            "error": None,
        },
        {"type": "mcp_list_tools", "id": "l2", "server_label": "s", "tools": TOOLS, "error": None},
        {"type": "mcp_list_tools", "id": "l3", "server_label": "s", "tools": [], "error": "down"},
        {
            "type": "mcp_list_tools",
            "id": "l4",
            "server_label": "other",
            "tools": TOOLS,
            "error": None,
        },
    ]
    reuse_listings(toolset, history)
    assert toolset.unlisted_servers() == []
    assert [t["function"]["name"] for t in toolset.chat_tools] == ["read", "write"]
