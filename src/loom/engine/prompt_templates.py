"""Reusable prompts: `{{variable}}` placeholders, and the create parameter `prompt` that fills them.

A stored template (`/v1/prompts`) is text with `{{name}}` placeholders. A response created
with `prompt: {id, version, variables}` gets the template, with each placeholder replaced by
its value, as its instructions. A value is a string or an input part (`input_text`,
`input_image`, `input_file`). Text values also fill placeholders in the request's own input
text. A template that receives an image or a file cannot be a system message (chat backends
take media only from the user), so it becomes a user message placed before the input.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from loom.errors import InvalidRequestError

PLACEHOLDER = re.compile(r"{{\s*([A-Za-z_][A-Za-z0-9_]*)\s*}}")
_PART_TYPES = {"input_text", "input_image", "input_file"}

Part = dict[str, Any]
Item = dict[str, Any]


def placeholders(text: str) -> list[str]:
    """The variable names a template uses, in order of first use."""
    return list(dict.fromkeys(PLACEHOLDER.findall(text)))


def declared_variables(text: str, variables: list[str] | None, param: str) -> list[str]:
    """The template's variables: as declared (which must cover every placeholder), or, when
    none are declared, the placeholders it uses."""
    used = placeholders(text)
    if variables is None:
        return used
    for name in variables:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise InvalidRequestError(
                f"Variable name {name!r} must be letters, digits and '_'.", param=param
            )
    undeclared = [name for name in used if name not in variables]
    if undeclared:
        raise InvalidRequestError(
            f"The prompt uses undeclared variables: {undeclared}.",
            param=param,
            code="invalid_value",
        )
    return list(dict.fromkeys(variables))


def _value_part(name: str, value: Any) -> Part:
    where = f"prompt.variables.{name}"
    if isinstance(value, str):
        return {"type": "input_text", "text": value}
    kind = value.get("type") if isinstance(value, dict) else None
    if kind not in _PART_TYPES:
        raise InvalidRequestError(
            f"'{where}' must be a string or an input_text, input_image or input_file part.",
            param=where,
            code="invalid_value",
        )
    if kind == "input_text" and not isinstance(value.get("text"), str):
        raise InvalidRequestError(f"'{where}.text' must be a string.", param=f"{where}.text")
    if kind == "input_image" and not (value.get("image_url") or value.get("file_id")):
        raise InvalidRequestError(
            f"'{where}' needs an 'image_url' or 'file_id'.", param=f"{where}.image_url"
        )
    if kind == "input_file" and not any(value.get(k) for k in ("file_data", "file_id", "file_url")):
        raise InvalidRequestError(
            f"'{where}' needs one of 'file_data', 'file_id' or 'file_url'.",
            param=f"{where}.file_data",
        )
    part = dict(value)
    if kind == "input_image":
        part.setdefault("detail", "auto")
    return part


def _render(text: str, values: dict[str, Part]) -> list[Part]:
    """`text` with its placeholders filled: text parts (merged) around media parts."""
    out: list[Part] = []

    def add_text(piece: str) -> None:
        if not piece:
            return
        if out and out[-1]["type"] == "input_text":
            out[-1] = {"type": "input_text", "text": out[-1]["text"] + piece}
        else:
            out.append({"type": "input_text", "text": piece})

    pos = 0
    for match in PLACEHOLDER.finditer(text):
        add_text(text[pos : match.start()])
        value = values.get(match.group(1))
        if value is None:  # not a variable of this prompt: left as written
            add_text(match.group(0))
        elif value["type"] == "input_text":
            add_text(value["text"])
        else:
            out.append(value)
        pos = match.end()
    add_text(text[pos:])
    return out


@dataclass
class RenderedPrompt:
    instructions: str | None  # the template as the system message, when it is all text
    lead_items: list[Item]  # or the template as a user message before the input
    echo: dict[str, Any]  # the Response's `prompt` field


def render_prompt(
    template: dict[str, Any], variables: dict[str, Any] | None, extra_instructions: str | None
) -> RenderedPrompt:
    """Fill a stored template version with the request's variables."""
    variables = variables or {}
    declared = template["variables"]
    unknown = [name for name in variables if name not in declared]
    if unknown:
        raise InvalidRequestError(
            f"Prompt {template['prompt_id']!r} version {template['version']} has no variable "
            f"{unknown[0]!r} (its variables: {declared}).",
            param=f"prompt.variables.{unknown[0]}",
            code="invalid_value",
        )
    missing = [name for name in placeholders(template["prompt"]) if name not in variables]
    if missing:
        raise InvalidRequestError(
            f"Missing value for prompt variable {missing[0]!r}.",
            param="prompt.variables",
            code="missing_required",
        )
    values = {name: _value_part(name, value) for name, value in variables.items()}
    parts = _render(template["prompt"], values)
    echo = {
        "id": template["prompt_id"],
        "version": str(template["version"]),
        "variables": variables,
    }
    if all(p["type"] == "input_text" for p in parts):
        text = "".join(p["text"] for p in parts)
        if extra_instructions:
            text = f"{text}\n\n{extra_instructions}" if text else extra_instructions
        return RenderedPrompt(text or None, [], echo)
    lead = {"type": "message", "role": "user", "content": parts}
    return RenderedPrompt(extra_instructions, [lead], echo)


def fill_input(items: list[Item], variables: dict[str, Any] | None) -> list[Item]:
    """The request's input with `{{variable}}` placeholders in its user text filled."""
    if not variables:
        return items
    values = {name: _value_part(name, value) for name, value in variables.items()}
    out = []
    for item in items:
        if item.get("type") != "message" or item.get("role") == "assistant":
            out.append(item)
            continue
        content: list[Part] = []
        for part in item["content"]:
            if part.get("type") == "input_text" and "{{" in part["text"]:
                content.extend(_render(part["text"], values))
            else:
                content.append(part)
        out.append({**item, "content": content})
    return out


def prompt_version(reference: str | int | None) -> int | None:
    """The `prompt.version` of a create request as a version number (None: the default)."""
    if reference is None:
        return None
    try:
        version = int(reference)
    except ValueError:
        version = 0
    if version < 1:
        raise InvalidRequestError(
            f"'prompt.version' must be a version number, got {reference!r}.",
            param="prompt.version",
            code="invalid_value",
        )
    return version
