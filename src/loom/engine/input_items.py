"""Validate a request's `input` and normalize it into stored items with stable ids.

The Responses API accepts a string or a list of loosely-typed items; every accepted item
is turned into its canonical shape here (content always a list of typed parts, an `id`
on every item) so the rest of the engine handles one form. Problems become 400s whose
`param` names the item and field, like `input[2].call_id`.
"""

from __future__ import annotations

from typing import Any

from loom.engine.ids import new_id
from loom.errors import invalid_value

Item = dict[str, Any]

_MESSAGE_ROLES = {"user", "system", "developer", "assistant"}
_INPUT_PART_TYPES = {"input_text", "input_image", "input_file", "input_audio"}
_OUTPUT_PART_TYPES = {"output_text", "refusal"}
# Items that may be echoed back from earlier output and are kept as history.
_PASSTHROUGH_TYPES = {
    "reasoning",
    "mcp_list_tools",
    "mcp_call",
    "mcp_approval_request",
    "file_search_call",
    "web_search_call",
    "item_reference",
}
_ID_PREFIX = {
    "message": "msg",
    "function_call": "fc",
    "function_call_output": "fco",
    "mcp_approval_response": "mcpr",
    "reasoning": "rs",
    "mcp_list_tools": "mcpl",
    "mcp_call": "mcp",
    "mcp_approval_request": "mcpr",
    "file_search_call": "fs",
    "web_search_call": "ws",
    "custom_tool_call": "ctc",
    "custom_tool_call_output": "ctco",
}


def _require_str(item: Item, key: str, where: str) -> str:
    value = item.get(key)
    if not isinstance(value, str):
        raise invalid_value(f"{where}.{key}", f"'{where}.{key}' is required and must be a string.")
    return value


def _normalize_content(role: str, content: Any, where: str) -> list[dict[str, Any]]:
    text_type = "output_text" if role == "assistant" else "input_text"
    if isinstance(content, str):
        part: dict[str, Any] = {"type": text_type, "text": content}
        if text_type == "output_text":
            part["annotations"] = []
        return [part]
    if not isinstance(content, list):
        raise invalid_value(
            f"{where}.content", f"'{where}.content' must be a string or a list of parts."
        )
    allowed = _OUTPUT_PART_TYPES if role == "assistant" else _INPUT_PART_TYPES
    parts = []
    for j, part in enumerate(content):
        pwhere = f"{where}.content[{j}]"
        if not isinstance(part, dict) or part.get("type") not in allowed | {"input_text"}:
            raise invalid_value(
                f"{pwhere}.type", f"'{pwhere}.type' must be one of {sorted(allowed)}."
            )
        kind = part["type"]
        if kind in ("input_text", "output_text"):
            _require_str(part, "text", pwhere)
            if kind == "input_text" and role == "assistant":
                part = {**part, "type": "output_text"}
            if part["type"] == "output_text" and "annotations" not in part:
                part = {**part, "annotations": []}
        elif kind == "input_image":
            if not isinstance(part.get("image_url"), str) and not isinstance(
                part.get("file_id"), str
            ):
                raise invalid_value(
                    f"{pwhere}.image_url", f"'{pwhere}' needs an 'image_url' or 'file_id'."
                )
            part = {"detail": "auto", **part}
        elif kind == "input_file":
            if not any(isinstance(part.get(k), str) for k in ("file_data", "file_id", "file_url")):
                raise invalid_value(
                    f"{pwhere}.file_data",
                    f"'{pwhere}' needs one of 'file_data', 'file_id' or 'file_url'.",
                )
        elif kind == "refusal":
            _require_str(part, "refusal", pwhere)
        parts.append(part)
    return parts


def normalize_item(raw: Any, where: str) -> Item:
    if not isinstance(raw, dict):
        raise invalid_value(where, f"'{where}' must be an object.")
    kind = raw.get("type") or ("message" if "role" in raw else None)
    if kind == "message":
        role = raw.get("role")
        if role not in _MESSAGE_ROLES:
            raise invalid_value(
                f"{where}.role", f"'{where}.role' must be one of {sorted(_MESSAGE_ROLES)}."
            )
        item = {
            "type": "message",
            "id": raw.get("id") or new_id("msg"),
            "role": role,
            "content": _normalize_content(role, raw.get("content"), where),
            "status": raw.get("status") or "completed",
        }
        if raw.get("phase") in ("commentary", "final_answer"):
            item["phase"] = raw["phase"]
        return item
    if kind == "compaction":
        _require_str(raw, "encrypted_content", where)
        return {
            "type": "compaction",
            "id": raw.get("id") or new_id("cmp"),
            "encrypted_content": raw["encrypted_content"],
        }
    if kind == "compaction_trigger":
        return {"type": "compaction_trigger"}
    if kind == "custom_tool_call":
        for key in ("call_id", "name", "input"):
            _require_str(raw, key, where)
        return {**raw, "id": raw.get("id") or new_id("ctc")}
    if kind in ("function_call_output", "custom_tool_call_output"):
        _require_str(raw, "call_id", where)
        output = raw.get("output")
        if not isinstance(output, str | list):
            raise invalid_value(f"{where}.output", f"'{where}.output' must be a string or a list.")
        if kind == "custom_tool_call_output":
            return {**raw, "id": raw.get("id") or new_id("ctco")}
        return {
            **raw,
            "id": raw.get("id") or new_id("fco"),
            "status": raw.get("status") or "completed",
        }
    if kind == "function_call":
        for key in ("call_id", "name", "arguments"):
            _require_str(raw, key, where)
        return {
            **raw,
            "id": raw.get("id") or new_id("fc"),
            "status": raw.get("status") or "completed",
        }
    if kind == "mcp_approval_response":
        _require_str(raw, "approval_request_id", where)
        if not isinstance(raw.get("approve"), bool):
            raise invalid_value(
                f"{where}.approve", f"'{where}.approve' is required and must be a boolean."
            )
        return {**raw, "id": raw.get("id") or new_id("mcpr")}
    if kind in _PASSTHROUGH_TYPES:
        if kind == "item_reference":
            _require_str(raw, "id", where)
            return dict(raw)
        return {**raw, "id": raw.get("id") or new_id(_ID_PREFIX[kind])}
    raise invalid_value(
        f"{where}.type", f"'{where}.type' {kind!r} is not a supported input item type."
    )


def normalize_input(raw: Any) -> list[Item]:
    """The request's `input` as a list of canonical items (an empty list for None)."""
    if raw is None:
        return []
    if isinstance(raw, str):
        return [normalize_item({"role": "user", "content": raw}, "input")]
    if not isinstance(raw, list):
        raise invalid_value("input", "'input' must be a string or a list of items.")
    return [normalize_item(item, f"input[{i}]") for i, item in enumerate(raw)]
