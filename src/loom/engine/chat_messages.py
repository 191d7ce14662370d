"""Translate Responses items into chat-completions messages for the model.

Providers speak chat completions; Responses history is a list of typed items. This is the
single place where one becomes the other.
"""

from __future__ import annotations

from typing import Any

Item = dict[str, Any]
Message = dict[str, Any]


def _text(parts: list[dict[str, Any]]) -> str:
    return "".join(p.get("text") or p.get("refusal") or "" for p in parts)


def _user_content(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """Plain text stays a string (what every backend accepts); media become typed parts."""
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


def items_to_messages(items: list[Item]) -> list[Message]:
    messages: list[Message] = []
    for item in items:
        kind = item.get("type")
        if kind == "message":
            role = item["role"]
            if role == "assistant":
                messages.append({"role": "assistant", "content": _text(item["content"])})
            elif role in ("system", "developer"):
                messages.append({"role": "system", "content": _text(item["content"])})
            else:
                messages.append({"role": "user", "content": _user_content(item["content"])})
        elif kind in ("function_call", "mcp_call"):
            call = {
                "id": item.get("call_id") or item["id"],
                "type": "function",
                "function": {"name": item["name"], "arguments": item.get("arguments") or ""},
            }
            last = messages[-1] if messages else None
            if last and last["role"] == "assistant" and "tool_calls" in last:
                last["tool_calls"].append(call)
            else:
                messages.append({"role": "assistant", "content": "", "tool_calls": [call]})
            if kind == "mcp_call":
                # An MCP call carries its own result; the model sees it as a tool message.
                result = item.get("output") or item.get("error") or ""
                messages.append({"role": "tool", "tool_call_id": call["id"], "content": result})
        elif kind == "function_call_output":
            messages.append(
                {
                    "role": "tool",
                    "tool_call_id": item["call_id"],
                    "content": _tool_output(item["output"]),
                }
            )
    return messages
