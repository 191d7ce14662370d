"""Every create field of `/v1/responses` and `/v1/chat/completions`, and what Loom does with it.

Loom's rule: a field is *honored* (Loom itself gives it an effect), *forwarded* (sent on to
the model's backend, which applies it), or *refused* (a 400 naming the field and saying
why). Nothing is accepted and then dropped. This module is the one place that says which
is which; the README table is rendered from it (`python -m loom.engine.params`) and a test
checks that the two agree, and that every field of the `openai` SDK's create params is here.

Two columns: a remote OpenAI-compatible provider, and the embedded `local` model (which
refuses what llama.cpp cannot do; see `inference/local/request.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from loom.errors import InvalidRequestError

Disposition = Literal["honored", "forwarded", "refused"]


@dataclass(frozen=True, slots=True)
class FieldRule:
    name: str
    remote: Disposition
    local: Disposition
    how: str  # what Loom does, or why it refuses


def _r(name: str, remote: Disposition, local: Disposition, how: str) -> FieldRule:
    return FieldRule(name, remote, local, how)


H, F, R = "honored", "forwarded", "refused"

RESPONSES_FIELDS: tuple[FieldRule, ...] = (
    _r("access_programs", R, R, "OpenAI-only access programs; no chat backend carries them"),
    _r(
        "background",
        H,
        H,
        "`true` (with `store`) queues the turn, runs it on any replica, and lets any replica "
        "retrieve, resume the stream of, or cancel it",
    ),
    _r("background_options", R, R, "background execution windows are not served"),
    _r(
        "context_management",
        H,
        H,
        "`compaction` with `compact_threshold`: past that many tokens Loom compacts the "
        "context into a sealed `compaction` item first in the output",
    ),
    _r("conversation", H, H, "history read from, and the turn appended to, the conversation"),
    _r("image", R, R, "image context compression is OpenAI-only; no chat backend carries it"),
    _r(
        "include",
        H,
        H,
        "`message.output_text.logprobs` asks the backend for logprobs and puts them on "
        "output text (refused by the embedded model); `reasoning.encrypted_content` returns "
        "the backend's encrypted reasoning where it gives one; items are always returned whole",
    ),
    _r("input", H, H, "translated to chat messages"),
    _r("instructions", H, H, "the first (system) message; not carried to the next response"),
    _r("max_output_tokens", F, H, "sent as `max_tokens`"),
    _r("max_tool_calls", H, H, "calls beyond the budget are dropped by the agent loop"),
    _r("metadata", H, H, "stored with the response and echoed"),
    _r("model", H, H, "`provider/model` picks the provider"),
    _r("moderation", R, R, "moderation is not run by Loom; no chat backend carries it"),
    _r(
        "parallel_tool_calls",
        F,
        H,
        "`false` is sent upstream, and Loom keeps only the first call of a model call",
    ),
    _r("previous_response_id", H, H, "the stored chain becomes the history"),
    _r("prompt", H, H, "a stored `/v1/prompts` template, its `{{variables}}` substituted"),
    _r(
        "prompt_cache_key",
        F,
        H,
        "sent upstream; the embedded model has no shared cache, and echoes it",
    ),
    _r("prompt_cache_options", F, H, "sent upstream; echoed for the embedded model"),
    _r("prompt_cache_retention", F, H, "sent upstream; echoed for the embedded model"),
    _r(
        "reasoning",
        F,
        R,
        "`effort` sent as `reasoning_effort`; `summary`: the backend's reasoning summaries "
        "(`reasoning_details`) become summary parts when it sends them; the embedded model "
        "does not reason",
    ),
    _r("safety_identifier", F, H, "sent upstream; echoed for the embedded model"),
    _r(
        "service_tier",
        F,
        H,
        "sent upstream; the tier the backend reports is returned. The "
        "embedded model accepts `auto` and `default`",
    ),
    _r("store", H, H, "`false` keeps the response out of storage"),
    _r("stream", H, H, "SSE events, or one JSON response"),
    _r(
        "stream_options",
        H,
        H,
        "`include_obfuscation: false` is what Loom does; `true` is "
        "refused (Loom does not pad events)",
    ),
    _r("temperature", F, H, "sent upstream"),
    _r(
        "text",
        F,
        H,
        "`format` sent as `response_format` (grammar-constrained on the "
        "embedded model); `verbosity` sent upstream, refused by the embedded model",
    ),
    _r("tool_choice", H, H, "applied by the agent loop; function choices sent upstream"),
    _r("tools", H, H, "function tools sent upstream; MCP tools run by Loom"),
    _r("top_logprobs", F, R, "sent with `logprobs: true`; the embedded model has no logprobs"),
    _r("top_p", F, H, "sent upstream"),
    _r(
        "truncation",
        H,
        H,
        "`auto` drops the oldest items to fit the model's context window; "
        "`disabled` fails with `context_length_exceeded` when it does not fit",
    ),
    _r("user", F, H, "sent upstream; echoed for the embedded model"),
)

CHAT_FIELDS: tuple[FieldRule, ...] = (
    _r("audio", F, R, "the embedded model has no audio output"),
    _r("frequency_penalty", F, H, "llama.cpp sampling"),
    _r("function_call", F, R, "deprecated; the embedded model takes `tool_choice`"),
    _r("functions", F, R, "deprecated; the embedded model takes `tools`"),
    _r("logit_bias", F, R, "not supported by the embedded model"),
    _r("logprobs", F, R, "the embedded model returns no logprobs"),
    _r("max_completion_tokens", F, H, "generation stops there"),
    _r("max_tokens", F, H, "generation stops there"),
    _r("messages", F, H, "rendered with the model's chat template"),
    _r("metadata", H, H, "stored with the completion (`store`), not sent upstream"),
    _r("modalities", F, H, "the embedded model writes text: only `['text']` is accepted"),
    _r("model", H, H, "`provider/model` picks the provider; the provider's name is sent"),
    _r("moderation", F, R, "moderation is not run by the embedded model"),
    _r("n", F, H, "the embedded model generates one choice: `n` must be 1"),
    _r("parallel_tool_calls", F, H, "the embedded model makes one call per turn"),
    _r("prediction", F, R, "predicted outputs are not supported by the embedded model"),
    _r("presence_penalty", F, H, "llama.cpp sampling"),
    _r("prompt_cache_key", F, H, "accepted: the embedded model has no shared cache"),
    _r("prompt_cache_options", F, H, "accepted: the embedded model has no shared cache"),
    _r("prompt_cache_retention", F, H, "accepted: the embedded model has no shared cache"),
    _r("reasoning_effort", F, R, "the embedded model does not reason"),
    _r("response_format", F, H, "grammar-constrained decoding on the embedded model"),
    _r("safety_identifier", F, H, "accepted: the embedded model has no abuse monitor"),
    _r("seed", F, H, "llama.cpp seed"),
    _r("service_tier", F, H, "the embedded model accepts `auto` and `default`"),
    _r("stop", F, H, "up to 4 sequences"),
    _r("store", H, H, "Loom stores the completion (`GET /v1/chat/completions`)"),
    _r(
        "stream_options",
        F,
        H,
        "`include_usage` honored; `include_obfuscation: true` refused by the embedded model",
    ),
    _r("temperature", F, H, "llama.cpp sampling"),
    _r("tool_choice", F, H, "grammar-constrained on the embedded model"),
    _r("tools", F, H, "function tools, grammar-constrained on the embedded model"),
    _r("top_logprobs", F, R, "the embedded model returns no logprobs"),
    _r("top_p", F, H, "llama.cpp sampling"),
    _r("user", F, H, "accepted: the embedded model has no abuse monitor"),
    _r("verbosity", F, R, "the embedded model cannot follow a verbosity level"),
    _r("web_search_options", F, R, "the embedded model has no web search"),
)

# `stream` is not in the SDK's Base TypedDicts (it lives in the streaming variants).
_STREAM = _r("stream", H, H, "SSE chunks, or one JSON completion")

# Fields that clients send although the SDK's create params lack them.
RESPONSES_EXTENSIONS: tuple[FieldRule, ...] = (
    _r(
        "client_metadata",
        H,
        H,
        "sent by Codex CLI to describe itself; accepted, kept off the upstream request and "
        "not stored, since it carries nothing for the model",
    ),
)

RESPONSES_RULES = {rule.name: rule for rule in (*RESPONSES_FIELDS, *RESPONSES_EXTENSIONS)}
CHAT_RULES = {rule.name: rule for rule in (*CHAT_FIELDS, _STREAM)}

# A chat field Loom sends upstream for a Responses field: a backend refusing the chat field
# is reported under the name the client used.
CHAT_TO_RESPONSES_PARAM = {
    "max_tokens": "max_output_tokens",
    "reasoning_effort": "reasoning.effort",
    "response_format": "text.format",
    "verbosity": "text.verbosity",
    "logprobs": "include",
}

# The values the Responses API defines for `include`, and the ones Loom cannot produce.
INCLUDABLE = frozenset(
    {
        "file_search_call.results",
        "web_search_call.results",
        "web_search_call.action.sources",
        "message.input_image.image_url",
        "computer_call_output.output.image_url",
        "code_interpreter_call.outputs",
        "reasoning.encrypted_content",
        "message.output_text.logprobs",
    }
)
_UNPRODUCIBLE_INCLUDES: dict[str, str] = {}


def _refused(param: str, reason: str) -> InvalidRequestError:
    return InvalidRequestError(
        f"'{param}' is not supported by this server: {reason}.",
        param=param,
        code="unsupported_parameter",
    )


def check_responses_fields(body: dict[str, Any]) -> None:
    """Refuse, with a 400 naming it, a field Loom does not know or cannot honor."""
    for name, value in body.items():
        rule = RESPONSES_RULES.get(name)
        if rule is None:
            raise InvalidRequestError(
                f"Unrecognized request argument supplied: {name}",
                param=name,
                code="unknown_parameter",
            )
        if value is None:
            continue
        if rule.remote == "refused":
            raise _refused(name, rule.how)
    _check_parts(body)


def _check_parts(body: dict[str, Any]) -> None:
    options = body.get("stream_options")
    if isinstance(options, dict) and options.get("include_obfuscation") is True:
        raise _refused(
            "stream_options.include_obfuscation",
            "Loom does not pad stream events with obfuscation; set it to false",
        )
    include = body.get("include")
    if isinstance(include, list):
        for value in include:
            if not isinstance(value, str):
                continue  # the type is checked with the rest of the body
            if value not in INCLUDABLE:
                raise InvalidRequestError(
                    f"Invalid value for 'include': {value!r}; expected one of "
                    f"{sorted(INCLUDABLE)}.",
                    param="include",
                    code="invalid_value",
                )
            if value in _UNPRODUCIBLE_INCLUDES:
                raise _refused("include", _UNPRODUCIBLE_INCLUDES[value])


def render_table(rules: tuple[FieldRule, ...]) -> str:
    """The Markdown table the README shows for one endpoint."""
    lines = ["| field | remote provider | embedded model | what Loom does |", "|---|---|---|---|"]
    for rule in sorted(rules, key=lambda r: r.name):
        lines.append(f"| `{rule.name}` | {rule.remote} | {rule.local} | {rule.how} |")
    return "\n".join(lines)


def readme_section() -> str:
    """Both tables, as they appear in the README between the marker comments."""
    return (
        "`POST /v1/responses`:\n\n"
        + render_table((*RESPONSES_FIELDS, *RESPONSES_EXTENSIONS))
        + "\n\n`POST /v1/chat/completions`:\n\n"
        + render_table((*CHAT_FIELDS, _STREAM))
        + "\n"
    )


if __name__ == "__main__":
    print(readme_section(), end="")
