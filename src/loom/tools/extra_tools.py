"""Namespace, custom and unknown tool types: how each reaches a chat-completions model.

Providers only know chat `function` tools, so every Responses tool the model may call is
offered as one function, and a `ToolRoute` remembers what the model's call to that chat
name really is:

- a function inside a `namespace` tool is offered as `<namespace>__<name>`; the model's call
  becomes a `function_call` item carrying `name` and `namespace` separately;
- a `custom` tool (free-form text input) is offered as a function with one string parameter,
  `input`. A `format: {type: grammar, syntax: regex, definition}` becomes that string's JSON
  Schema `pattern`: strict upstreams (OpenAI) enforce it, and the embedded model enforces it
  by construction (llama.cpp turns the pattern into GBNF). A `lark` grammar is compiled to
  such a pattern when it is regular (see lark_regex.py); one that is not (recursive rules,
  `%ignore`, ...) is shown to the model in the description and not enforced.
  The call becomes a `custom_tool_call` item whose `input` is that string;
- an upstream configured with `custom_tools: native` (OpenAI's chat API takes them) gets
  custom tools as chat `custom` tools with their grammar as given; their calls stream raw
  input, which Loom relays as it comes;
- a tool whose type Loom does not know is kept and echoed as given. When it has a `name`, it
  is offered like a function (its `parameters` if any), so a model that calls it gets a clear
  failure naming the tool instead of a call nobody can run.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from loom.errors import InvalidRequestError
from loom.tools.lark_regex import LarkSubsetError, lark_to_regex

_CHAT_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
CUSTOM_INPUT = "input"  # the one parameter a custom tool is offered with


@dataclass(frozen=True)
class ToolRoute:
    """What a model's call to one chat function name stands for."""

    kind: str  # "function" | "custom" | "unknown"
    name: str  # the tool's own name
    namespace: str | None = None
    tool_type: str | None = None  # for "unknown": the tool's declared type
    native: bool = False  # a custom tool offered as a chat `custom` tool (see below)


def chat_tool_name(namespace: str | None, name: str) -> str:
    """The chat function name of a (possibly namespaced) tool; stable, and always valid."""
    if not namespace:
        return name
    joined = f"{namespace}__{name}" if not namespace.endswith("_") else f"{namespace}{name}"
    if _CHAT_NAME.match(joined):
        return joined
    digest = hashlib.sha1(joined.encode()).hexdigest()[:10]
    safe = re.sub(r"[^a-zA-Z0-9_-]", "_", joined)[:53]
    return f"{safe}_{digest}"


def _require_name(raw: dict[str, Any], where: str) -> str:
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidRequestError(f"'{where}.name' is required.", param=f"{where}.name")
    return name


def custom_tool_schema(raw: dict[str, Any], where: str) -> tuple[dict[str, Any], str]:
    """A custom tool's chat parameters schema and the description the model reads."""
    description = raw.get("description") or ""
    fmt = raw.get("format")
    prop: dict[str, Any] = {"type": "string", "description": "The tool's free-form input."}
    if fmt is not None:
        if not isinstance(fmt, dict) or fmt.get("type") not in ("text", "grammar"):
            raise InvalidRequestError(
                f"'{where}.format.type' must be 'text' or 'grammar'.", param=f"{where}.format.type"
            )
        if fmt["type"] == "grammar":
            syntax, definition = fmt.get("syntax"), fmt.get("definition")
            if syntax not in ("lark", "regex"):
                raise InvalidRequestError(
                    f"'{where}.format.syntax' must be 'lark' or 'regex'.",
                    param=f"{where}.format.syntax",
                )
            if not isinstance(definition, str) or not definition:
                raise InvalidRequestError(
                    f"'{where}.format.definition' must be a non-empty string.",
                    param=f"{where}.format.definition",
                )
            if syntax == "regex":
                try:
                    re.compile(definition)
                except re.error as exc:
                    raise InvalidRequestError(
                        f"'{where}.format.definition' is not a valid regex: {exc}",
                        param=f"{where}.format.definition",
                    ) from None
                prop["pattern"] = definition if definition.startswith("^") else f"^{definition}$"
            else:
                try:
                    prop["pattern"] = lark_to_regex(definition)
                except LarkSubsetError:  # not regular: shown to the model, not enforced
                    description += f"\nThe input must follow this Lark grammar:\n{definition}"
    schema = {
        "type": "object",
        "properties": {CUSTOM_INPUT: prop},
        "required": [CUSTOM_INPUT],
        "additionalProperties": False,
    }
    return schema, description.strip()


def _chat_function(name: str, description: str | None, parameters: Any) -> dict[str, Any]:
    function: dict[str, Any] = {"name": name}
    if description:
        function["description"] = description
    params = parameters if isinstance(parameters, dict) else None
    function["parameters"] = params or {"type": "object", "properties": {}}
    return {"type": "function", "function": function}


def offer_custom(
    raw: dict[str, Any], where: str, namespace: str | None = None, native: bool = False
) -> tuple[str, dict[str, Any], ToolRoute]:
    """A custom tool as a chat function; or, for an upstream that takes chat `custom`
    tools (`custom_tools: native`), as one, its grammar passed on as given."""
    name = _require_name(raw, where)
    schema, description = custom_tool_schema(raw, where)  # validates the format either way
    chat_name = chat_tool_name(namespace, name)
    route = ToolRoute("custom", name, namespace, native=native)
    if not native:
        return chat_name, _chat_function(chat_name, description, schema), route
    custom: dict[str, Any] = {"name": chat_name}
    if raw.get("description"):
        custom["description"] = raw["description"]
    fmt = raw.get("format")
    if isinstance(fmt, dict) and fmt.get("type") == "grammar":
        grammar = {"syntax": fmt["syntax"], "definition": fmt["definition"]}
        custom["format"] = {"type": "grammar", "grammar": grammar}
    else:
        custom["format"] = {"type": "text"}
    return chat_name, {"type": "custom", "custom": custom}, route


def offer_namespace(
    raw: dict[str, Any], where: str, native: bool = False
) -> list[tuple[str, dict[str, Any], ToolRoute]]:
    """The chat functions of a `namespace` tool's nested function and custom tools."""
    namespace = _require_name(raw, where)
    nested = raw.get("tools")
    if not isinstance(nested, list):
        raise InvalidRequestError(f"'{where}.tools' must be a list.", param=f"{where}.tools")
    offers = []
    for j, tool in enumerate(nested):
        twhere = f"{where}.tools[{j}]"
        kind = tool.get("type") if isinstance(tool, dict) else None
        if kind == "function":
            name = _require_name(tool, twhere)
            chat_name = chat_tool_name(namespace, name)
            description = tool.get("description") or raw.get("description")
            offers.append(
                (
                    chat_name,
                    _chat_function(chat_name, description, tool.get("parameters")),
                    ToolRoute("function", name, namespace),
                )
            )
        elif kind == "custom":
            offers.append(offer_custom(tool, twhere, namespace, native))
        else:
            raise InvalidRequestError(
                f"'{twhere}.type' must be 'function' or 'custom' inside a namespace.",
                param=f"{twhere}.type",
            )
    return offers


def offer_unknown(raw: dict[str, Any]) -> tuple[str, dict[str, Any], ToolRoute] | None:
    """A tool of a type Loom cannot run: offered by its name if it has one, else not at all."""
    name = raw.get("name")
    kind = str(raw.get("type"))
    if not isinstance(name, str) or not _CHAT_NAME.match(name):
        return None
    route = ToolRoute("unknown", name, tool_type=kind)
    return name, _chat_function(name, raw.get("description"), raw.get("parameters")), route
