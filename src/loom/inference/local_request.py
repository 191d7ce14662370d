"""Turn an OpenAI chat-completions body into a request for the embedded llama.cpp model.

Validation happens here, on the event loop and before the request waits for the model, so
bad input fails at once with a 400 naming the field. `GenerationRequest.sampling` is the one
place that maps OpenAI's sampling fields to `llama_cpp.Llama.generate()` keyword arguments;
grammar-constrained decoding for `tools` and `response_format` will be added there. Until
then those fields are accepted and ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from loom.errors import InvalidRequestError
from loom.inference.base import Json

# SmolLM2's model card samples at temperature 0.2; OpenAI's default of 1.0 makes a small
# model ramble. A client that sends `temperature` gets exactly what it asked for.
DEFAULT_TEMPERATURE = 0.2
DEFAULT_TOP_P = 0.95
MAX_STOP_SEQUENCES = 4

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


def parse_request(body: Json) -> GenerationRequest:
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
    return GenerationRequest(
        messages=_messages(body.get("messages")),
        max_tokens=max_tokens,
        stop=_stop(body.get("stop")),
        seed=seed,
        sampling=sampling,
        include_usage=include_usage,
    )


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
    return [_message(m, f"messages[{i}]") for i, m in enumerate(value)]


def _message(message: object, param: str) -> dict[str, str]:
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
        calls = [_describe_call(c) for c in message.get("tool_calls") or []]
        text = "\n".join(t for t in [text, *calls] if t)
    elif role in ("tool", "function"):
        source = message.get("tool_call_id") or message.get("name") or "a tool"
        text = f"Result from {source}:\n{text}"
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


def _describe_call(call: object) -> str:
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(function, dict):
        return ""
    return f"Called tool {function.get('name')} with arguments {function.get('arguments')}"
