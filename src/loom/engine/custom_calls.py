"""Custom tool calls and calls to tools Loom cannot run, between chat and Responses.

A custom tool is offered to chat models as a function with one string parameter (see
tools/extra_tools.py), so the model's call arrives as `{"input": "..."}` JSON; the
`custom_tool_call` item carries the string itself. This module also renders such items
back as chat tool calls for the model's history.
"""

from __future__ import annotations

from typing import Any

import orjson

from loom.errors import LoomError
from loom.tools.extra_tools import CUSTOM_INPUT, ToolRoute, chat_tool_name
from loom.tools.toolset import ToolSet


class UnrunnableToolCall(LoomError):
    """The model called a tool of a type this server keeps and echoes but cannot run."""

    status_code = 400


def unknown_tool_error(route: ToolRoute) -> UnrunnableToolCall:
    return UnrunnableToolCall(
        f"The model called the tool '{route.name}' of type '{route.tool_type}', which this "
        "server does not run. Remove the tool from 'tools' or use a model backend that "
        "supports it.",
        param="tools",
        code="unsupported_tool_type",
    )


def custom_input(arguments: str, fallback: str = "") -> str:
    """The `input` string of a custom call's JSON arguments; the raw text if it is not JSON
    of that shape (a model that ignored the schema still gets its words delivered)."""
    try:
        parsed = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return arguments or fallback
    if isinstance(parsed, dict) and isinstance(parsed.get(CUSTOM_INPUT), str):
        return parsed[CUSTOM_INPUT]
    return arguments


def chat_call(item: dict[str, Any]) -> dict[str, Any]:
    """A function_call or custom_tool_call item as a chat `tool_calls` entry."""
    name = chat_tool_name(item.get("namespace"), item["name"])
    if item["type"] == "custom_tool_call":
        arguments = orjson.dumps({CUSTOM_INPUT: item.get("input") or ""}).decode()
    else:
        arguments = item.get("arguments") or ""
    return {
        "id": item.get("call_id") or item["id"],
        "type": "function",
        "function": {"name": name, "arguments": arguments},
    }


def native_custom_messages(
    messages: list[dict[str, Any]], toolset: ToolSet
) -> list[dict[str, Any]]:
    """`messages` with the calls to native custom tools (`custom_tools: native`) in the chat
    `custom` form those upstreams expect; unchanged when the turn offers none."""
    native = {name for name, route in toolset.routes.items() if route.native}
    if not native:
        return messages
    out = []
    for message in messages:
        calls = message.get("tool_calls")
        if calls and any((c.get("function") or {}).get("name") in native for c in calls):
            message = {**message, "tool_calls": [_native(c, native) for c in calls]}
        out.append(message)
    return out


def _native(call: dict[str, Any], native: set[str]) -> dict[str, Any]:
    function = call.get("function") or {}
    if function.get("name") not in native:
        return call
    custom = {"name": function["name"], "input": custom_input(function.get("arguments") or "")}
    return {"id": call["id"], "type": "custom", "custom": custom}
