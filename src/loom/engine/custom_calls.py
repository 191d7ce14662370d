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
