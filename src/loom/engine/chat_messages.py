"""Translate Responses items into chat-completions messages for the model.

Providers speak chat completions; Responses history is a list of typed items. This is the
single place where one becomes the other.
"""

from __future__ import annotations

import json
from typing import Any

from loom.engine.citations import with_markers
from loom.engine.custom_calls import chat_call
from loom.tools.file_search import SEARCH_FUNCTION, known_files, render_for_model
from loom.tools.mcp_tools import error_text

Item = dict[str, Any]
Message = dict[str, Any]


# The one-part cases below are the same as the general ones, written out: a conversation's
# history is mostly one-part text messages, and this runs over all of it every turn.


def _text(parts: list[dict[str, Any]]) -> str:
    if len(parts) == 1:
        return parts[0].get("text") or parts[0].get("refusal") or ""
    return "".join(p.get("text") or p.get("refusal") or "" for p in parts)


def _user_content(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """Plain text stays a string (what every backend accepts); media become typed parts."""
    if len(parts) == 1 and parts[0]["type"] == "input_text":
        return _text(parts)
    if all(p["type"] == "input_text" for p in parts):
        return _text(parts)
    out: list[dict[str, Any]] = []
    for p in parts:
        kind = p["type"]
        if kind == "input_text":
            out.append({"type": "text", "text": p["text"]})
        elif kind == "input_image":
            url = p.get("image_url") or p.get("file_id")
            out.append({"type": "image_url", "image_url": {"url": url, "detail": p["detail"]}})
        elif kind == "input_file":
            file: dict[str, Any] = {}
            for key in ("file_data", "file_id", "filename"):
                if p.get(key):
                    file[key] = p[key]
            out.append({"type": "file", "file": file})
    return out


def _tool_output(output: Any) -> str:
    if isinstance(output, str):
        return output
    return "".join(p.get("text", "") for p in output if isinstance(p, dict))


def _mcp_result(item: Item) -> str:
    if item.get("output") is not None:
        return item["output"]
    return error_text(item.get("error"))


def _denied(request: Item, answer: Item) -> list[Message]:
    """A refused MCP call, as the model sees it: the call, then a tool message saying so."""
    call = {
        "id": request["id"],
        "type": "function",
        "function": {"name": request["name"], "arguments": request.get("arguments") or ""},
    }
    text = "The user denied this tool call."
    if answer.get("reason"):
        text += f" Reason: {answer['reason']}"
    return [
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": request["id"], "content": text},
    ]


def _assistant_text(parts: list[dict[str, Any]], citable: dict[str, str]) -> str:
    """An answer as the model wrote it: citations of searched files go back in as
    `<|file-id|>`."""
    if len(parts) == 1:
        part = parts[0]
        if part.get("type") != "output_text":
            return part.get("refusal") or ""
        text = part.get("text") or ""
        annotations = part.get("annotations")
        return with_markers(text, annotations, citable) if annotations else text
    return "".join(
        with_markers(p.get("text") or "", p.get("annotations") or (), citable)
        if p.get("type") == "output_text"
        else p.get("refusal") or ""
        for p in parts
    )


def _search_call(item: Item, messages: list[Message], after_search: bool) -> None:
    """A file search: the model's call, then the hits it read. Searches that follow each
    other came from one model call: one assistant message, then their tool messages."""
    query = " ".join(item.get("queries") or [])
    call = {
        "id": item["id"],
        "type": "function",
        "function": {"name": SEARCH_FUNCTION, "arguments": json.dumps({"query": query})},
    }
    assistant = None
    last = messages[-1] if messages else None
    if last is not None and last["role"] == "assistant" and "tool_calls" in last:
        assistant = last  # the model's function calls of the same model call
    elif after_search:
        assistant = next(m for m in reversed(messages) if m["role"] == "assistant")
    if assistant is not None:
        assistant["tool_calls"].append(call)
    else:
        messages.append({"role": "assistant", "content": "", "tool_calls": [call]})
    messages.append({"role": "tool", "tool_call_id": item["id"], "content": render_for_model(item)})


def _attach(message: Message, sealed: list[dict[str, str]]) -> list[dict[str, str]]:
    if sealed:
        message["reasoning_details"] = sealed
    return []


def items_to_messages(items: list[Item]) -> list[Message]:
    messages: list[Message] = []
    approval_requests: dict[str, Item] = {}
    sealed: list[dict[str, str]] = []  # reasoning to hand back with the next assistant turn
    previous = None
    citable: dict[str, str] | None = None  # files the searches in `items` returned
    for item in items:
        kind = item.get("type")
        after_search, previous = previous == "file_search_call", kind
        if kind == "reasoning" and item.get("encrypted_content"):
            # Given by an upstream in OpenRouter's form; it goes back the same way.
            sealed.append({"type": "reasoning.encrypted", "data": item["encrypted_content"]})
        elif kind == "file_search_call":
            _search_call(item, messages, after_search)
        elif kind == "message":
            role = item["role"]
            if role == "assistant":
                if citable is None:
                    citable = known_files(items)
                content = _assistant_text(item["content"], citable)
                messages.append({"role": "assistant", "content": content})
                sealed = _attach(messages[-1], sealed)
            elif role in ("system", "developer"):
                messages.append({"role": "system", "content": _text(item["content"])})
            else:
                messages.append({"role": "user", "content": _user_content(item["content"])})
        elif kind in ("function_call", "mcp_call", "custom_tool_call"):
            call = chat_call(item)
            last = messages[-1] if messages else None
            if last and last["role"] == "assistant" and "tool_calls" in last:
                last["tool_calls"].append(call)
            else:
                messages.append({"role": "assistant", "content": "", "tool_calls": [call]})
                sealed = _attach(messages[-1], sealed)
            if kind == "mcp_call":
                # An MCP call carries its own result; the model sees it as a tool message.
                content = _mcp_result(item)
                messages.append({"role": "tool", "tool_call_id": call["id"], "content": content})
        elif kind == "mcp_approval_request":
            approval_requests[item["id"]] = item
        elif kind == "mcp_approval_response" and not item.get("approve"):
            # An approved call shows up as the `mcp_call` that ran it.
            request = approval_requests.get(item.get("approval_request_id"))
            if request is not None:
                messages.extend(_denied(request, item))
        elif kind in ("function_call_output", "custom_tool_call_output"):
            messages.append(
                {
                    "role": "tool",
                    "tool_call_id": item["call_id"],
                    "content": _tool_output(item["output"]),
                }
            )
    return messages
