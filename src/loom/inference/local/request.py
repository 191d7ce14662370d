"""Turn an OpenAI chat-completions body into a request for the embedded llama.cpp model.

Validation happens here, on the event loop and before the request waits for the model, so
bad input fails at once with a 400 naming the field. `GenerationRequest.sampling` is the one
place that maps OpenAI's sampling fields to `llama_cpp.Llama.generate()` keyword arguments.
`tools`, `tool_choice` and `response_format` become a system note for the model and the
grammars that constrain its output (see `grammar` for how calls work).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal

from loom.errors import InvalidRequestError
from loom.inference.base import Json
from loom.inference.local.grammar import (
    answer_grammar,
    call_grammar,
    call_or_answer_grammar,
    describe_call,
    tools_note,
)

# SmolLM2's model card samples at temperature 0.2; OpenAI's default of 1.0 makes a small
# model ramble. A client that sends `temperature` gets exactly what it asked for.
DEFAULT_TEMPERATURE = 0.2
DEFAULT_TOP_P = 0.95
MAX_STOP_SEQUENCES = 4
# Under a grammar a small model easily loops ("Lyon-Lyon-Lyon", the same array item again
# and again) until max_tokens cuts the JSON short. A mild frequency penalty, unless the
# client sets one, made SmolLM2 finish 11 of 12 JSON answers within 300 tokens, against 4.
CONSTRAINED_FREQUENCY_PENALTY = 0.5
TOOL_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")

# Roles the chat template sees. Tool results have no place in a plain chat template yet, so
# they are shown to the model as user text.
_TEMPLATE_ROLE = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
    "tool": "user",
    "function": "user",
}


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    messages: list[dict[str, str]]  # {"role", "content"} with plain-text content
    max_tokens: int | None  # None: until the context window is full
    stop: tuple[str, ...]
    seed: int | None
    sampling: dict[str, Any]  # keyword arguments for Llama.generate()
    include_usage: bool
    # "forced": the output is a tool call; "auto": it may be one; "none": it is not.
    calls: Literal["none", "auto", "forced"] = "none"
    grammar: str | None = None  # GBNF constraining the output from its first token
    call_grammar: str | None = None  # "auto" without a format: the grammar of a call


# What the embedded model does with each chat field it accepts. Fields it reads are applied;
# the advisory ones name an end user or a cache for a hosted service, which one process has
# no counterpart for, so they are accepted and have no effect (README: "Create parameters").
_APPLIED = frozenset(
    {
        "model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p",
        "frequency_penalty", "presence_penalty", "seed", "stop", "stream", "stream_options",
        "tools", "tool_choice", "response_format", "n", "parallel_tool_calls", "service_tier",
        "logprobs", "modalities",
    }
)  # fmt: skip
_ADVISORY = frozenset(
    {
        "user", "safety_identifier", "prompt_cache_key", "prompt_cache_retention",
        "prompt_cache_options", "metadata", "store",
    }
)  # fmt: skip
_REFUSED = {
    "audio": "the local model has no audio output",
    "function_call": "deprecated 'function_call' is not supported; use 'tool_choice'",
    "functions": "deprecated 'functions' is not supported; use 'tools'",
    "logit_bias": "the local model does not support 'logit_bias'",
    "top_logprobs": "the local model returns no logprobs",
    "moderation": "the local model runs no moderation",
    "prediction": "the local model does not support predicted outputs",
    "reasoning_effort": "the local model does not reason",
    "verbosity": "the local model cannot follow a verbosity level",
    "web_search_options": "the local model has no web search",
}


def check_fields(body: Json) -> None:
    """Refuse, naming it, every field the embedded model would otherwise silently drop."""
    for key, value in body.items():
        if value is None or key in _ADVISORY:
            continue
        if key not in _APPLIED:
            reason = _REFUSED.get(key, f"the local model does not support '{key}'")
            raise InvalidRequestError(reason, param=key, code="unsupported_parameter")
    if body.get("logprobs"):
        raise InvalidRequestError(
            "the local model returns no logprobs", param="logprobs", code="unsupported_parameter"
        )
    modalities = body.get("modalities")
    if modalities is not None and modalities != ["text"]:
        raise InvalidRequestError(
            "the local model writes text only; 'modalities' may only be ['text']",
            param="modalities",
            code="unsupported_parameter",
        )
    tier = body.get("service_tier")
    if tier not in (None, "auto", "default"):
        raise InvalidRequestError(
            f"the local model has one service tier; 'service_tier' {tier!r} is not available",
            param="service_tier",
            code="unsupported_parameter",
        )
    options = body.get("stream_options")
    if isinstance(options, dict) and options.get("include_obfuscation") is True:
        raise InvalidRequestError(
            "the local model does not pad stream chunks with obfuscation",
            param="stream_options.include_obfuscation",
            code="unsupported_parameter",
        )


def parse_request(body: Json) -> GenerationRequest:
    check_fields(body)
    n = body.get("n")
    if n is not None and n != 1:
        raise InvalidRequestError(
            "the local provider generates one choice; 'n' must be 1", param="n"
        )
    max_tokens = _max_tokens(body)
    temperature = _number(body, "temperature", 0.0, 2.0, DEFAULT_TEMPERATURE)
    sampling = {
        "temp": temperature,
        "top_p": _number(body, "top_p", 0.0, 1.0, DEFAULT_TOP_P),
        "frequency_penalty": _number(body, "frequency_penalty", -2.0, 2.0, 0.0),
        "presence_penalty": _number(body, "presence_penalty", -2.0, 2.0, 0.0),
    }
    seed = body.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise InvalidRequestError("'seed' must be an integer", param="seed")
    options = body.get("stream_options")
    include_usage = isinstance(options, dict) and options.get("include_usage") is True
    messages = _messages(body.get("messages"))
    tools = _tools(body.get("tools"))
    choice = _tool_choice(body.get("tool_choice"), tools)
    answer = _response_format(body.get("response_format"))
    notes = []
    calls: Literal["none", "auto", "forced"] = "none"
    grammar = call = None
    if tools and choice != "none":
        notes.append(tools_note(tools, choice))
        if choice == "auto":
            calls = "auto"
            if answer is None:
                call = call_grammar(tools)
            else:
                grammar = call_or_answer_grammar(tools, answer[1])
        else:
            calls = "forced"
            grammar = call_grammar(tools, None if choice == "required" else choice)
    if answer is not None and calls != "forced":
        grammar = grammar or answer_grammar(answer[1])
        notes.append(answer[0])
    if (calls != "none" or grammar is not None) and body.get("frequency_penalty") is None:
        sampling["frequency_penalty"] = CONSTRAINED_FREQUENCY_PENALTY
    return GenerationRequest(
        messages=_with_notes(messages, notes),
        max_tokens=max_tokens,
        stop=_stop(body.get("stop")),
        seed=seed,
        sampling=sampling,
        include_usage=include_usage,
        calls=calls,
        grammar=grammar,
        call_grammar=call,
    )


def _tools(value: object) -> list[dict[str, Any]]:
    """The offered functions as {"name", "description", "parameters"}."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidRequestError("'tools' must be an array", param="tools")
    tools = []
    for i, tool in enumerate(value):
        param = f"tools[{i}]"
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type") != "function":
            raise InvalidRequestError(
                "the local model supports only tools of type 'function'", param=f"{param}.type"
            )
        if not isinstance(function, dict):
            raise InvalidRequestError("a function tool needs a 'function'", param=param)
        name = function.get("name")
        if not isinstance(name, str) or not TOOL_NAME.fullmatch(name):
            raise InvalidRequestError(
                "a function name must be 1 to 64 letters, digits, '_' or '-'",
                param=f"{param}.function.name",
            )
        parameters = function.get("parameters")
        if parameters is None:
            parameters = {"type": "object", "properties": {}}
        if not isinstance(parameters, dict):
            raise InvalidRequestError(
                "'parameters' must be a JSON schema object", param=f"{param}.function.parameters"
            )
        description = function.get("description")
        tools.append({"name": name, "description": description, "parameters": parameters})
    return tools


def _tool_choice(value: object, tools: list[dict[str, Any]]) -> str:
    """One of "none", "auto" and "required", or the name of the one tool to call."""
    if value is None:
        return "auto"
    if value in ("none", "auto", "required"):
        name = None
    elif isinstance(value, dict) and value.get("type") == "function":
        function = value.get("function")
        name = function.get("name") if isinstance(function, dict) else value.get("name")
    else:
        raise InvalidRequestError(
            "'tool_choice' must be 'none', 'auto', 'required' or a function",
            param="tool_choice",
        )
    if name is None:
        if value == "required" and not tools:
            raise InvalidRequestError("tool_choice 'required' needs 'tools'", param="tool_choice")
        return str(value)
    if name not in {t["name"] for t in tools}:
        raise InvalidRequestError(
            f"tool_choice names the function {name!r}, which is not in 'tools'",
            param="tool_choice",
        )
    return name


def _response_format(value: object) -> tuple[str, dict[str, Any] | None] | None:
    """None for text; else the note for the model and the schema (None: any object)."""
    kind = value.get("type") if isinstance(value, dict) else None
    if value is None or kind == "text":
        return None
    if kind == "json_object":
        return "Reply with a JSON object only.", None
    if kind == "json_schema":
        spec = value.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise InvalidRequestError(
                "'json_schema' needs a 'schema' object",
                param="response_format.json_schema.schema",
            )
        note = "Reply with a JSON value only, following this JSON schema:\n" + json.dumps(schema)
        return note, schema
    raise InvalidRequestError(
        "'response_format' type must be 'text', 'json_object' or 'json_schema'",
        param="response_format",
    )


def _with_notes(messages: list[dict[str, str]], notes: list[str]) -> list[dict[str, str]]:
    """The messages, with `notes` added to the system message (one is added if need be)."""
    if not notes:
        return messages
    note = "\n\n".join(notes)
    if messages[0]["role"] == "system":
        first = messages[0]["content"]
        return [{"role": "system", "content": f"{first}\n\n{note}"}, *messages[1:]]
    return [{"role": "system", "content": note}, *messages]


def _max_tokens(body: Json) -> int | None:
    for key in ("max_completion_tokens", "max_tokens"):
        value = body.get(key)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise InvalidRequestError(f"'{key}' must be a positive integer", param=key)
        return value
    return None


def _number(body: Json, key: str, low: float, high: float, default: float) -> float:
    value = body.get(key)
    if value is None:
        return default
    if not isinstance(value, int | float) or isinstance(value, bool) or not low <= value <= high:
        raise InvalidRequestError(f"'{key}' must be a number from {low} to {high}", param=key)
    return float(value)


def _stop(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    stops = [value] if isinstance(value, str) else value
    if (
        not isinstance(stops, list)
        or len(stops) > MAX_STOP_SEQUENCES
        or not all(isinstance(s, str) for s in stops)
    ):
        raise InvalidRequestError(
            f"'stop' must be a string or an array of up to {MAX_STOP_SEQUENCES} strings",
            param="stop",
        )
    return tuple(s for s in stops if s)


def _messages(value: object) -> list[dict[str, str]]:
    if not isinstance(value, list) or not value:
        raise InvalidRequestError("'messages' must be a non-empty array", param="messages")
    names: dict[str, str] = {}  # tool call id -> function name, to label results
    return [_message(m, f"messages[{i}]", names) for i, m in enumerate(value)]


def _message(message: object, param: str, names: dict[str, str]) -> dict[str, str]:
    if not isinstance(message, dict):
        raise InvalidRequestError("each message must be an object", param=param)
    role = message.get("role")
    if role not in _TEMPLATE_ROLE:
        raise InvalidRequestError(f"unsupported message role {role!r}", param=f"{param}.role")
    content = message.get("content")
    if content is None and role != "assistant":
        raise InvalidRequestError(f"a {role} message needs content", param=f"{param}.content")
    text = _text(content, f"{param}.content")
    if role == "assistant":
        calls = [_describe_call(c, names) for c in message.get("tool_calls") or []]
        text = "\n".join(t for t in [text, *calls] if t)
    elif role in ("tool", "function"):
        call_id = message.get("tool_call_id")
        source = names.get(call_id) if isinstance(call_id, str) else None
        source = source or message.get("name") or "a tool"
        text = f"Result of {source}:\n{text}"
    return {"role": _TEMPLATE_ROLE[role], "content": text}


def _text(content: object, param: str) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise InvalidRequestError("content must be a string or an array of parts", param=param)
    texts = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in ("text", "refusal"):
            raise InvalidRequestError(
                f"content part type {kind!r} is not supported by the local model; only text is",
                param=f"{param}[{j}]",
            )
        text = part.get(kind)
        if not isinstance(text, str):
            raise InvalidRequestError(
                f"a {kind} part needs a string '{kind}'", param=f"{param}[{j}]"
            )
        texts.append(text)
    return "\n".join(texts)


def _describe_call(call: object, names: dict[str, str]) -> str:
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(function, dict):
        return ""
    name = function.get("name")
    call_id = call.get("id") if isinstance(call, dict) else None
    if isinstance(call_id, str) and isinstance(name, str):
        names[call_id] = name
    return describe_call(name, function.get("arguments") or "{}")
