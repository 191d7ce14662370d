"""The tools of one response: what the model is offered, what is echoed, who runs each call.

Client-side functions end the turn with a `function_call` item; server-side tools (MCP,
file search) are run by the loop. The loop only asks this object which is which.
An MCP server's tools join the offer once they are listed (or found listed in history).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from loom.errors import InvalidRequestError
from loom.tools import file_search
from loom.tools.extra_tools import ToolRoute, offer_custom, offer_namespace, offer_unknown
from loom.tools.file_search import FileSearchConfig, parse_file_search_tool
from loom.tools.mcp_tools import McpServer, chat_tool, parse_mcp_tool

_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


@dataclass
class ToolSet:
    chat_tools: list[dict[str, Any]] = field(default_factory=list)
    echo: list[dict[str, Any]] = field(default_factory=list)
    chat_tool_choice: Any = None
    echo_tool_choice: Any = "auto"
    function_names: set[str] = field(default_factory=set)
    mcp_servers: dict[str, McpServer] = field(default_factory=dict)  # by server_label
    # A listed MCP tool's name → its server and listing entry.
    mcp_tools: dict[str, tuple[McpServer, dict[str, Any]]] = field(default_factory=dict)
    # From an `allowed_tools` tool_choice: server_label → the tool names it allows (None: all).
    mcp_choice: dict[str, set[str] | None] | None = None
    listed_labels: set[str] = field(default_factory=set)
    file_search: FileSearchConfig | None = None
    # file id → filename of every file a search of this turn or its history returned: the
    # files the model may cite.
    citable_files: dict[str, str] = field(default_factory=dict)

    def is_file_search(self, name: str) -> bool:
        """Whether a model's call to `name` is a search the server runs."""
        return self.file_search is not None and name == file_search.SEARCH_FUNCTION

    # Chat names of namespaced, custom and unknown-typed tools → what a call to them is.
    routes: dict[str, ToolRoute] = field(default_factory=dict)

    def route(self, name: str) -> ToolRoute | None:
        return self.routes.get(name)

    def _offer(self, chat_name: str, chat_tool: dict[str, Any], route: ToolRoute, where: str):
        if chat_name in self.function_names:
            raise InvalidRequestError(f"Duplicate tool name '{chat_name}'.", param=f"{where}.name")
        self.chat_tools.append(chat_tool)
        self.function_names.add(chat_name)
        self.routes[chat_name] = route

    def mcp_tool(self, name: str) -> tuple[McpServer, dict[str, Any]] | None:
        """The server that runs a model's call to `name`, if an MCP tool has that name."""
        return self.mcp_tools.get(name)

    def unlisted_servers(self) -> list[McpServer]:
        return [s for label, s in self.mcp_servers.items() if label not in self.listed_labels]

    def add_mcp_listing(self, server: McpServer, tools: list[dict[str, Any]]) -> None:
        """Offer the model what `server` listed, as far as `allowed_tools` and the
        tool_choice allow. A name already taken (a function, an earlier server) keeps its
        first owner."""
        self.listed_labels.add(server.label)
        for tool in tools:
            name = tool["name"]
            if name in self.function_names or name in self.mcp_tools or self.is_file_search(name):
                continue
            if server.allows(tool) and self._chosen(server, name):
                self.mcp_tools[name] = (server, tool)
                self.chat_tools.append(chat_tool(tool))

    def _chosen(self, server: McpServer, name: str) -> bool:
        if self.mcp_choice is None:
            return True
        if server.label not in self.mcp_choice:
            return False
        names = self.mcp_choice[server.label]
        return names is None or name in names


def _function_tool(raw: dict[str, Any], where: str) -> tuple[dict[str, Any], dict[str, Any]]:
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidRequestError(
            f"'{where}.name' must match ^[a-zA-Z0-9_-]{{1,64}}$.", param=f"{where}.name"
        )
    parameters = raw.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        raise InvalidRequestError(
            f"'{where}.parameters' must be a JSON schema object.", param=f"{where}.parameters"
        )
    function: dict[str, Any] = {"name": name}
    if raw.get("description"):
        function["description"] = raw["description"]
    function["parameters"] = parameters or {"type": "object", "properties": {}}
    if raw.get("strict") is not None:
        function["strict"] = raw["strict"]
    echo = {
        "type": "function",
        "name": name,
        "description": raw.get("description"),
        "parameters": parameters,
        "strict": raw.get("strict") if raw.get("strict") is not None else True,
    }
    return {"type": "function", "function": function}, echo


def _named(choice: dict[str, Any], names: set[str], param: str) -> str:
    name = choice.get("name")
    if name not in names:
        raise InvalidRequestError(
            f"Tool choice names a function '{name}' that is not in 'tools'.", param=param
        )
    return name


def chat_tool_name_of(tool: dict[str, Any]) -> str:
    """The name of a chat tool, a `function` or a native `custom` one."""
    return (tool.get("function") or tool.get("custom") or {}).get("name", "")


def build_toolset(
    tools: list[dict[str, Any]] | None, tool_choice: Any, *, native_custom: bool = False
) -> ToolSet:
    """`native_custom`: the upstream takes chat `custom` tools (see extra_tools)."""
    toolset = ToolSet()
    for i, raw in enumerate(tools or []):
        where = f"tools[{i}]"
        kind = raw.get("type") if isinstance(raw, dict) else None
        if kind == "function":
            chat_tool, echo = _function_tool(raw, where)
            if echo["name"] in toolset.function_names:
                raise InvalidRequestError(
                    f"Duplicate function name '{echo['name']}'.", param=f"{where}.name"
                )
            toolset.chat_tools.append(chat_tool)
            toolset.echo.append(echo)
            toolset.function_names.add(echo["name"])
        elif kind == "mcp":
            server, echo = parse_mcp_tool(raw, where)
            if server.label in toolset.mcp_servers:
                raise InvalidRequestError(
                    f"Duplicate MCP server_label '{server.label}'.", param=f"{where}.server_label"
                )
            toolset.mcp_servers[server.label] = server
            toolset.echo.append(echo)
        elif kind == "file_search":
            if toolset.file_search is not None:
                raise InvalidRequestError(
                    "Only one file_search tool may be given.", param=f"{where}.type"
                )
            toolset.file_search, echo = parse_file_search_tool(raw, where)
            toolset.chat_tools.append(file_search.chat_tool())
            toolset.echo.append(echo)
        elif kind == "namespace":
            for offer in offer_namespace(raw, where, native_custom):
                toolset._offer(*offer, where)
            toolset.echo.append(raw)
        elif kind == "custom":
            toolset._offer(*offer_custom(raw, where, native=native_custom), where)
            toolset.echo.append(raw)
        elif isinstance(kind, str):
            # Kept and echoed; a model that calls it gets a clear failure (see extra_tools).
            offer = offer_unknown(raw)
            if offer is not None and offer[0] not in toolset.function_names:
                toolset._offer(*offer, where)
            toolset.echo.append(raw)
        else:
            raise InvalidRequestError(f"'{where}.type' is required.", param=f"{where}.type")
    if toolset.file_search is not None and file_search.SEARCH_FUNCTION in toolset.function_names:
        raise InvalidRequestError(
            f"The function name '{file_search.SEARCH_FUNCTION}' is reserved for file_search.",
            param="tools",
        )
    _apply_tool_choice(toolset, tool_choice)
    return toolset


def _apply_tool_choice(toolset: ToolSet, choice: Any) -> None:
    if choice is None:
        toolset.echo_tool_choice = "auto"
        return
    toolset.echo_tool_choice = choice
    has_tools = bool(toolset.chat_tools or toolset.mcp_servers)
    if isinstance(choice, str):
        if choice != "none" and choice != "auto" and not has_tools:
            raise InvalidRequestError(
                f"tool_choice '{choice}' needs at least one tool.", param="tool_choice"
            )
        toolset.chat_tool_choice = choice if has_tools else None
        return
    kind = choice.get("type")
    if kind == "file_search":
        if toolset.file_search is None:
            raise InvalidRequestError(
                "Tool choice 'file_search' needs a file_search tool in 'tools'.",
                param="tool_choice.type",
            )
        forced = {"type": "function", "function": {"name": file_search.SEARCH_FUNCTION}}
        toolset.chat_tool_choice = forced
    elif kind in ("function", "custom"):
        name = _named(choice, toolset.function_names, "tool_choice.name")
        route = toolset.route(name)
        if route is not None and route.native:
            toolset.chat_tool_choice = {"type": "custom", "custom": {"name": name}}
        else:
            toolset.chat_tool_choice = {"type": "function", "function": {"name": name}}
    elif kind == "mcp":
        label = choice.get("server_label")
        if label not in toolset.mcp_servers:
            raise InvalidRequestError(
                f"Tool choice names an MCP server '{label}' that is not in 'tools'.",
                param="tool_choice.server_label",
            )
        name = choice.get("name")
        toolset.mcp_choice = {label: {name} if isinstance(name, str) else None}
        toolset.chat_tools = []  # the server's tools alone, once listed
        forced = {"type": "function", "function": {"name": name}}
        toolset.chat_tool_choice = forced if isinstance(name, str) else "required"
    elif kind == "allowed_tools":
        mode = choice.get("mode", "auto")
        if mode not in ("auto", "required"):
            raise InvalidRequestError(
                "'tool_choice.mode' must be auto or required.", param="tool_choice.mode"
            )
        allowed = choice.get("tools")
        if not isinstance(allowed, list) or not allowed:
            raise InvalidRequestError(
                "'tool_choice.tools' must be a non-empty list.", param="tool_choice.tools"
            )
        keep = {
            _named(t, toolset.function_names, f"tool_choice.tools[{i}].name")
            for i, t in enumerate(allowed)
            if isinstance(t, dict) and t.get("type") in ("function", "custom")
        }
        if any(isinstance(t, dict) and t.get("type") == "file_search" for t in allowed):
            keep.add(file_search.SEARCH_FUNCTION)
        toolset.chat_tools = [t for t in toolset.chat_tools if chat_tool_name_of(t) in keep]
        toolset.mcp_choice = _allowed_mcp(allowed, toolset)
        toolset.chat_tool_choice = mode
    else:
        raise InvalidRequestError(
            f"tool_choice type {kind!r} is not supported.", param="tool_choice.type"
        )


def _allowed_mcp(allowed: list[Any], toolset: ToolSet) -> dict[str, set[str] | None]:
    """The MCP entries of an `allowed_tools` choice: server_label → names (None: all)."""
    out: dict[str, set[str] | None] = {}
    for i, entry in enumerate(allowed):
        if not isinstance(entry, dict) or entry.get("type") != "mcp":
            continue
        label = entry.get("server_label")
        if label not in toolset.mcp_servers:
            raise InvalidRequestError(
                f"Tool choice names an MCP server '{label}' that is not in 'tools'.",
                param=f"tool_choice.tools[{i}].server_label",
            )
        name = entry.get("name")
        names = out.get(label, set())
        if not isinstance(name, str):
            out[label] = None  # the whole server
        elif names is not None:
            out[label] = names | {name}
    return out
