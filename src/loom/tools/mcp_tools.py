"""What a request's `{"type": "mcp"}` tool says, and the pure rules that follow from it.

Parsing and validating the tool (400s name the field), the echo that is safe to return and
store (no `headers`, no `authorization`), which listed tools the model may see
(`allowed_tools`), which calls need a human's approval (`require_approval`), and how MCP
listings and call results become Responses fields. Nothing here does I/O; the
connections live in `mcp_client.py`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from loom.errors import invalid_value

_LABEL = re.compile(r"^[a-zA-Z][a-zA-Z0-9_-]*$")

# What OpenAI does when `require_approval` is absent: ask before sharing data with a server.
DEFAULT_APPROVAL = "always"


@dataclass(frozen=True)
class ToolFilter:
    """A set of tool names and/or a read-only condition (OpenAI's MCP tool filter)."""

    names: frozenset[str] | None = None
    read_only: bool | None = None

    @property
    def empty(self) -> bool:
        return self.names is None and self.read_only is None

    def matches(self, tool: dict[str, Any]) -> bool:
        """Whether the tool meets every condition given; an empty filter matches nothing."""
        if self.empty or (self.names is not None and tool["name"] not in self.names):
            return False
        if self.read_only is not None:
            annotations = tool.get("annotations") or {}
            return bool(annotations.get("readOnlyHint")) == self.read_only
        return True


@dataclass(frozen=True)
class McpServer:
    """One MCP server of a request. `headers` carry the credentials: never echoed or stored."""

    label: str
    url: str
    headers: dict[str, str] = field(repr=False, default_factory=dict)
    allowed: ToolFilter | None = None  # None: every listed tool
    always: ToolFilter | None = None  # calls that need approval (None with `never`: all)
    never: ToolFilter | None = None  # calls that do not
    approval_default: bool = True  # for tools neither filter names
    description: str | None = None

    @property
    def uses_sse(self) -> bool:
        """The legacy SSE transport is chosen by a URL path ending in `/sse`."""
        return urlsplit(self.url).path.rstrip("/").endswith("/sse")

    def allows(self, tool: dict[str, Any]) -> bool:
        return self.allowed is None or self.allowed.empty or self.allowed.matches(tool)

    def needs_approval(self, tool: dict[str, Any]) -> bool:
        if self.never is not None and self.never.matches(tool):
            return False
        if self.always is not None and self.always.matches(tool):
            return True
        return self.approval_default


# -- parsing the request's tool ------------------------------------------------------------


def _tool_filter(raw: Any, where: str, names_list: bool = True) -> ToolFilter:
    """`allowed_tools` may be a plain list of names; approval filters are objects."""
    if isinstance(raw, list) and names_list:
        if not all(isinstance(n, str) for n in raw):
            raise invalid_value(where, f"'{where}' must be a list of tool names.")
        return ToolFilter(names=frozenset(raw))
    if not isinstance(raw, dict):
        kind = "a list of tool names or a filter object" if names_list else "a filter object"
        raise invalid_value(where, f"'{where}' must be {kind}.")
    names = raw.get("tool_names")
    if names is not None and (
        not isinstance(names, list) or not all(isinstance(n, str) for n in names)
    ):
        raise invalid_value(
            f"{where}.tool_names", f"'{where}.tool_names' must be a list of strings."
        )
    read_only = raw.get("read_only")
    if read_only is not None and not isinstance(read_only, bool):
        raise invalid_value(f"{where}.read_only", f"'{where}.read_only' must be a boolean.")
    return ToolFilter(names=None if names is None else frozenset(names), read_only=read_only)


def _approval(raw: Any, where: str) -> tuple[ToolFilter | None, ToolFilter | None, bool]:
    """(always, never, default) for `require_approval`."""
    if raw is None:
        raw = DEFAULT_APPROVAL
    if raw == "always":
        return None, None, True
    if raw == "never":
        return None, None, False
    if not isinstance(raw, dict) or not set(raw) <= {"always", "never"}:
        raise invalid_value(
            where, f"'{where}' must be 'always', 'never' or an object with always/never."
        )
    always = (
        _tool_filter(raw["always"], f"{where}.always", False)
        if raw.get("always") is not None
        else None
    )
    never = (
        _tool_filter(raw["never"], f"{where}.never", False)
        if raw.get("never") is not None
        else None
    )
    # Tools that neither filter names need approval, unless only `always` was given.
    return always, never, not (always is not None and never is None)


def _headers(raw: dict[str, Any], where: str) -> dict[str, str]:
    headers = raw.get("headers") or {}
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        raise invalid_value(
            f"{where}.headers", f"'{where}.headers' must map header names to strings."
        )
    out = dict(headers)
    token = raw.get("authorization")
    if token is not None:
        if not isinstance(token, str) or not token:
            raise invalid_value(
                f"{where}.authorization", f"'{where}.authorization' must be a string."
            )
        out = {k: v for k, v in out.items() if k.lower() != "authorization"}
        out["Authorization"] = f"Bearer {token}"
    return out


def parse_mcp_tool(raw: dict[str, Any], where: str) -> tuple[McpServer, dict[str, Any]]:
    """The server a request's MCP tool names, and the echo of that tool without secrets."""
    label = raw.get("server_label")
    if not isinstance(label, str) or not _LABEL.match(label):
        raise invalid_value(
            f"{where}.server_label",
            f"'{where}.server_label' must start with a letter and hold only letters, digits,"
            " '-' and '_'.",
        )
    url = raw.get("server_url")
    if url is None and raw.get("connector_id") is not None:
        raise invalid_value(
            f"{where}.connector_id", "Connectors are not supported; use 'server_url'."
        )
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        raise invalid_value(f"{where}.server_url", f"'{where}.server_url' must be an http(s) URL.")
    description = raw.get("server_description")
    if description is not None and not isinstance(description, str):
        raise invalid_value(
            f"{where}.server_description", f"'{where}.server_description' must be a string."
        )
    allowed_raw = raw.get("allowed_tools")
    allowed = None if allowed_raw is None else _tool_filter(allowed_raw, f"{where}.allowed_tools")
    always, never, default = _approval(raw.get("require_approval"), f"{where}.require_approval")
    server = McpServer(
        label=label,
        url=url,
        headers=_headers(raw, where),
        allowed=allowed,
        always=always,
        never=never,
        approval_default=default,
        description=description,
    )
    echo = {
        "type": "mcp",
        "server_label": label,
        "server_url": url,
        "allowed_tools": allowed_raw,
        "require_approval": raw.get("require_approval") or DEFAULT_APPROVAL,
        "server_description": description,
    }
    return server, echo


# -- listings -------------------------------------------------------------------------------


def listed_tool(tool: Any) -> dict[str, Any]:
    """An `mcp.types.Tool` as an entry of an `mcp_list_tools` item's `tools`."""
    annotations = None
    if tool.annotations is not None:
        annotations = tool.annotations.model_dump(by_alias=True, exclude_none=True) or None
    return {
        "name": tool.name,
        "description": tool.description,
        "input_schema": tool.input_schema,
        "annotations": annotations,
    }


def chat_tool(tool: dict[str, Any]) -> dict[str, Any]:
    """A listed MCP tool as a chat-completions function tool; the schema goes unchanged."""
    function: dict[str, Any] = {"name": tool["name"]}
    if tool.get("description"):
        function["description"] = tool["description"]
    function["parameters"] = tool.get("input_schema") or {"type": "object", "properties": {}}
    return {"type": "function", "function": function}


# -- call results ---------------------------------------------------------------------------


def _block_text(block: Any) -> str:
    text = getattr(block, "text", None)
    if isinstance(text, str):
        return text
    return json.dumps(block.model_dump(mode="json", by_alias=True, exclude_none=True))


def call_outcome(result: Any) -> tuple[str | None, dict[str, Any] | None]:
    """`(output, error)` of an `mcp_call` item from an `mcp.types.CallToolResult`."""
    if result.is_error:
        content = [
            b.model_dump(mode="json", by_alias=True, exclude_none=True) for b in result.content
        ]
        return None, {"type": "mcp_tool_execution_error", "content": content}
    if result.content:
        return "\n".join(_block_text(b) for b in result.content), None
    if result.structured_content is not None:
        return json.dumps(result.structured_content), None
    return "", None


def error_text(error: Any) -> str:
    """What the model reads for an `mcp_call.error` (an object, or a plain string)."""
    if isinstance(error, str):
        return error
    if not isinstance(error, dict):
        return ""
    if error.get("type") == "mcp_tool_execution_error":
        parts = error.get("content") or []
        text = "\n".join(p.get("text", "") for p in parts if isinstance(p, dict))
        return text or "The tool failed."
    return str(error.get("message") or "The tool call failed.")
