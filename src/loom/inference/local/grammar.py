"""Grammars (llama.cpp GBNF) that make the embedded model's output valid by construction.

Tool calls and `response_format` use grammar-constrained decoding: at each step llama.cpp
masks every token that would take the text out of the grammar, so a 135M-parameter model
still produces JSON that parses and validates against the schema it was given.

How a tool call looks to the model. The tools are listed in a system note (the SmolLM2 chat
template has no notion of tools), which tells the model to call one by replying with
`<tool_call>` followed by `{"name": ..., "arguments": ...}`. The grammar for a call is exactly
that: the marker, then an object whose `name` is one offered tool's name (a constant) and
whose `arguments` follow that tool's `parameters` schema, one alternative per tool.

- `tool_choice` "required": the whole output is constrained to a call to any offered tool.
- `tool_choice` naming a tool: the same, with only that tool's alternative.
- `tool_choice` "auto": generation starts unconstrained, so plain answers cost nothing extra.
  If the model's reply begins with `<tool` (leading blanks aside), it has chosen to call:
  that start is thrown away and generation restarts from the prompt under the call grammar
  (the prompt is still in llama.cpp's cache, so the restart costs one token's evaluation).
  Any other start is a text answer and streams as it comes. With a `response_format` as
  well, the output is constrained from the start to "a call, or the formatted answer".
- `tool_choice` "none", or no tools: no note, no grammar; plain text.
- `response_format` json_schema: the grammar of that schema; json_object: any JSON object.

Schemas are converted by llama-cpp-python's `SchemaConverter`. Each schema gets its own
converter and its rule names a prefix of their own, so two tools whose schemas both define,
say, `$defs/Item` cannot clash. JSON strings are restricted to characters JSON allows
unescaped (the converter's own rule lets raw control characters through). A small model can
loop inside a string or an array until `max_tokens` cuts the JSON short, so strings and
arrays whose schema sets no bound get one (MAX_STRING_CHARS, MAX_ARRAY_ITEMS): output that
satisfies the bound still satisfies the schema. Grammars are cached by their inputs, since
an agent sends the same tools on every turn.

Limits: what the converter cannot express is not enforced. Output always has the schema's
shape, types, required properties, enums and consts, but numeric `minimum`/`maximum`,
`multipleOf`, `uniqueItems` and most string `format`s are left to the model.
"""

from __future__ import annotations

import copy
import json
import re
from functools import lru_cache
from typing import Any

from loom.errors import InvalidRequestError

CALL_MARKER = "<tool_call>"
# A small model can loop inside a string or an array until the token budget runs out, which
# leaves invalid JSON. Where a schema sets no bound, these do, so that output always ends.
MAX_STRING_CHARS = 500
MAX_ARRAY_ITEMS = 64
CALL_TRIGGER = "<tool"  # in "auto", a reply that starts like this is a call

_UNBOUNDED_STRING = r'"\"" char* "\"" space'
_UNBOUNDED_ARRAY = '"[" space ( value ("," space value)* )? "]" space'
# A JSON string character: anything but a quote, a backslash or a control character, or an
# escape. The converter's `char` rule allows raw control characters, which JSON does not.
_CHAR_RULE = r'[^"\\\x00-\x1F\x7F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{4})'
# Tokens of a GBNF rule body: string literals and character classes (kept as they are),
# repetition counts, and names (prefixed when they name a rule of the same grammar).
_BODY_TOKEN = re.compile(r'"(?:\\.|[^"\\])*"|\[(?:\\.|[^\]\\])*\]|\{[0-9,]*\}|[a-zA-Z0-9-]+')
# The start of a call as the grammar writes it, up to where the arguments begin.
CALL_HEAD = re.compile(
    r"\s*" + re.escape(CALL_MARKER) + r'\s*\{\s*"name"\s*:\s*"([A-Za-z0-9_-]+)"\s*,\s*'
    r'"arguments"\s*:\s*(?=\S)'
)


def call_grammar(tools: list[dict[str, Any]], only: str | None = None) -> str:
    """A grammar for `<tool_call>{"name": ..., "arguments": ...}` calling one of `tools`
    (each {"name", "parameters"}), or only the one named `only`."""
    chosen = [t for t in tools if only is None or t["name"] == only]
    key = json.dumps([[t["name"], t["parameters"]] for t in chosen])
    return _call_grammar(key, None)


def call_or_answer_grammar(tools: list[dict[str, Any]], answer: dict[str, Any] | None) -> str:
    """A grammar for either a call to one of `tools` or an answer in the JSON schema
    `answer` (None: any JSON object)."""
    key = json.dumps([[t["name"], t["parameters"]] for t in tools])
    return _call_grammar(key, json.dumps(answer))


def answer_grammar(schema: dict[str, Any] | None) -> str:
    """A grammar for JSON that validates against `schema` (None: any JSON object)."""
    return _answer_grammar(json.dumps(schema))


@lru_cache(maxsize=64)
def _call_grammar(tools_key: str, answer_key: str | None) -> str:
    rules: dict[str, str] = {}
    alternatives = []
    for i, (name, parameters) in enumerate(json.loads(tools_key)):
        arguments = _convert(parameters, f"t{i}", rules)
        rules[f"t{i}-call"] = (
            f'"{{" space "\\"name\\"" space ":" space {_literal(name)} '
            f'"," space "\\"arguments\\"" space ":" space {arguments} "}}" space'
        )
        alternatives.append(f"t{i}-call")
    call = f"{json.dumps(CALL_MARKER)} space ( {' | '.join(alternatives)} )"
    if answer_key is None:
        rules["root"] = call
    else:
        answer = _convert(_object_or(json.loads(answer_key)), "answer", rules)
        rules["root"] = f"{call} | {answer}"
    rules["space"] = '" "?'
    return _format(rules)


@lru_cache(maxsize=64)
def _answer_grammar(schema_key: str) -> str:
    rules: dict[str, str] = {}
    rules["root"] = _convert(_object_or(json.loads(schema_key)), "answer", rules)
    rules["space"] = '" "?'
    return _format(rules)


def _object_or(schema: dict[str, Any] | None) -> dict[str, Any]:
    return {"type": "object"} if schema is None else schema


def _convert(schema: object, prefix: str, rules: dict[str, str]) -> str:
    """Add the rules for JSON Schema `schema` to `rules`, named `prefix-...`; return the
    name of its top rule. Raises InvalidRequestError for a schema the converter rejects."""
    from llama_cpp.llama_grammar import SchemaConverter

    if not isinstance(schema, dict):
        raise InvalidRequestError(f"a JSON schema must be an object, not {schema!r}")
    converter = SchemaConverter(
        prop_order={"name": 0, "arguments": 1},
        allow_fetch=False,
        dotall=False,
        raw_pattern=False,
    )
    try:
        resolved = converter.resolve_refs(_bounded(copy.deepcopy(schema)), prefix)
        top = converter.visit(resolved, "")
        lines = converter.format_grammar().splitlines()
    except Exception as exc:  # the converter asserts on what it cannot express
        raise InvalidRequestError(
            f"the local model cannot follow this JSON schema: {exc or type(exc).__name__}"
        ) from None
    own = dict(line.split(" ::= ", 1) for line in lines)
    if "char" in own:
        own["char"] = _CHAR_RULE
    if own.get("string") == _UNBOUNDED_STRING:
        own["string"] = f'"\\"" char{{0,{MAX_STRING_CHARS}}} "\\"" space'
    if own.get("array") == _UNBOUNDED_ARRAY:
        own["array"] = _UNBOUNDED_ARRAY.replace(")*", f"){{0,{MAX_ARRAY_ITEMS - 1}}}")

    def rename(match: re.Match[str]) -> str:
        token = match[0]
        return f"{prefix}-{token}" if token in own else token

    for name, body in own.items():
        rules[f"{prefix}-{name}"] = _BODY_TOKEN.sub(rename, body)
    return f"{prefix}-{top}"


def _bounded(schema: Any) -> Any:
    """`schema` (changed in place) with bounds on the strings and arrays it leaves open:
    maxItems here; unbounded strings are the converter's `string` rule, bounded later."""
    if not isinstance(schema, dict):
        return schema
    if isinstance(schema.get("items"), dict) and "maxItems" not in schema:
        schema["maxItems"] = max(MAX_ARRAY_ITEMS, schema.get("minItems", 0))
    if "minLength" in schema and "maxLength" not in schema:
        schema["maxLength"] = max(MAX_STRING_CHARS, schema["minLength"])
    for key in ("items", "additionalProperties", "not"):
        _bounded(schema.get(key))
    for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
        for sub in schema.get(key) or ():
            _bounded(sub)
    for key in ("properties", "$defs", "definitions"):
        for sub in (schema.get(key) or {}).values():
            _bounded(sub)
    return schema


def _literal(text: str) -> str:
    """A GBNF string literal for the JSON encoding of `text`."""
    return json.dumps(json.dumps(text))


def _format(rules: dict[str, str]) -> str:
    return "\n".join(f"{name} ::= {body}" for name, body in rules.items())


def tools_note(tools: list[dict[str, Any]], choice: str | None) -> str:
    """The system note that shows the model its tools and how to call them. `choice` is
    "auto", "required", or the name of the tool it must call."""
    listing = "\n".join(
        json.dumps({k: t[k] for k in ("name", "description", "parameters") if t.get(k) is not None})
        for t in tools
    )
    how = (
        f"To call a tool, reply with {CALL_MARKER} followed by a JSON object with the "
        'tool\'s "name" and its "arguments", for example:\n'
        f'{CALL_MARKER}{{"name": "{tools[0]["name"]}", "arguments": {{...}}}}'
    )
    if choice == "auto":
        when = "Call a tool when it helps answer; otherwise answer in plain text."
    elif choice == "required":
        when = "Now call the tool that best fits the request."
    else:
        when = f"Now call the tool {choice}."
    return f"You can use these tools:\n<tools>\n{listing}\n</tools>\n{how}\n{when}"


def describe_call(name: object, arguments: object) -> str:
    """A past call, written the way the model is told to write calls."""
    return f'{CALL_MARKER}{{"name": {json.dumps(name)}, "arguments": {arguments}}}'
