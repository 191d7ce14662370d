"""The `POST /v1/responses` body: validated at the edge, then turned into plain values.

`CreateResponse` is the pydantic model for the request; `chat_params` maps its sampling
and output options to chat-completions fields; `response_skeleton` builds the Response
object that echoes the request, with the defaults the Open Responses spec requires.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from loom.engine.params import check_responses_fields
from loom.errors import InvalidRequestError
from loom.metadata import Metadata


class TextFormat(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: Literal["text", "json_object", "json_schema"]
    name: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    description: str | None = None
    strict: bool | None = None

    @model_validator(mode="after")
    def _schema_needs_name(self) -> TextFormat:
        if self.type == "json_schema" and (not self.name or self.schema_ is None):
            raise ValueError("a json_schema format needs 'name' and 'schema'")
        return self


class TextConfig(BaseModel):
    model_config = ConfigDict(extra="allow")

    format: TextFormat | None = None
    verbosity: Literal["low", "medium", "high"] | None = None


class ReasoningConfig(BaseModel):
    model_config = ConfigDict(extra="allow")

    effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"] | None = None
    summary: Literal["auto", "concise", "detailed"] | None = None


_DEFAULTED_FLAGS = ("store", "stream", "background")


class PromptReference(BaseModel):
    """`prompt`: a stored template (`/v1/prompts`), a version, and values for its variables."""

    model_config = ConfigDict(extra="forbid")

    id: str
    version: str | int | None = None
    variables: dict[str, str | dict[str, Any]] | None = None


class CreateResponse(BaseModel):
    """The create body. Every field is honored, forwarded or refused (engine/params.py)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    model: str
    input: str | list[Any] | None = None
    instructions: str | None = None
    previous_response_id: str | None = None
    conversation: str | dict[str, Any] | None = None
    store: bool = True
    stream: bool = False
    background: bool = False
    metadata: Metadata | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    max_output_tokens: int | None = Field(default=None, ge=16)  # as OpenAI: at least 16
    max_tool_calls: int | None = Field(default=None, ge=0)
    tool_choice: Literal["auto", "none", "required"] | dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    parallel_tool_calls: bool | None = None
    text: TextConfig | None = None
    reasoning: ReasoningConfig | None = None
    include: list[str] | None = None
    user: str | None = None
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None
    truncation: Literal["auto", "disabled"] | None = None
    service_tier: str | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    prompt: PromptReference | None = None
    prompt_cache_retention: Literal["in_memory", "24h"] | None = None
    prompt_cache_options: dict[str, Any] | None = None
    stream_options: dict[str, Any] | None = None

    @model_validator(mode="before")
    @classmethod
    def _known_fields(cls, data: Any) -> Any:
        if isinstance(data, dict):
            check_responses_fields(data)
        return data

    @model_validator(mode="before")
    @classmethod
    def _null_is_the_default(cls, data: Any) -> Any:
        # The SDK's types allow null for these flags (it means "not given").
        if isinstance(data, dict) and any(data.get(k, 0) is None for k in _DEFAULTED_FLAGS):
            data = {k: v for k, v in data.items() if not (v is None and k in _DEFAULTED_FLAGS)}
        return data

    @model_validator(mode="after")
    def _exclusive(self) -> CreateResponse:
        if self.background and not self.store:
            raise InvalidRequestError(
                "Background responses must be stored: 'background' needs 'store' to be true.",
                param="background",
                code="invalid_value",
            )
        if self.conversation is not None and self.previous_response_id is not None:
            raise InvalidRequestError(
                "'conversation' and 'previous_response_id' cannot be used together.",
                param="conversation",
                code="invalid_value",
            )
        return self

    @property
    def conversation_id(self) -> str | None:
        conv = self.conversation
        if isinstance(conv, dict):
            conv_id = conv.get("id")
            if not isinstance(conv_id, str):
                raise InvalidRequestError(
                    "'conversation.id' must be a string.", param="conversation.id"
                )
            return conv_id
        return conv


# Responses fields that chat completions carry under the same name and meaning.
_SAME_NAME = (
    "prompt_cache_key",
    "prompt_cache_retention",
    "prompt_cache_options",
    "safety_identifier",
    "user",
    "service_tier",
)

LOGPROBS_INCLUDE = "message.output_text.logprobs"


def wants_logprobs(req: CreateResponse) -> bool:
    return req.top_logprobs is not None or LOGPROBS_INCLUDE in (req.include or ())


def chat_params(req: CreateResponse) -> dict[str, Any]:
    """Sampling and output options as chat-completions fields."""
    params: dict[str, Any] = {}
    for name in _SAME_NAME:
        value = getattr(req, name)
        if value is not None:
            params[name] = value
    if wants_logprobs(req):
        params["logprobs"] = True
        if req.top_logprobs is not None:
            params["top_logprobs"] = req.top_logprobs
    if req.text is not None and req.text.verbosity is not None:
        params["verbosity"] = req.text.verbosity
    if req.temperature is not None:
        params["temperature"] = req.temperature
    if req.top_p is not None:
        params["top_p"] = req.top_p
    if req.max_output_tokens is not None:
        params["max_tokens"] = req.max_output_tokens
    if req.reasoning is not None and req.reasoning.effort is not None:
        params["reasoning_effort"] = req.reasoning.effort
    fmt = req.text.format if req.text else None
    if fmt is not None and fmt.type == "json_object":
        params["response_format"] = {"type": "json_object"}
    elif fmt is not None and fmt.type == "json_schema":
        schema: dict[str, Any] = {"name": fmt.name, "schema": fmt.schema_}
        if fmt.strict is not None:
            schema["strict"] = fmt.strict
        if fmt.description:
            schema["description"] = fmt.description
        params["response_format"] = {"type": "json_schema", "json_schema": schema}
    return params


def text_echo(req: CreateResponse) -> dict[str, Any]:
    fmt = req.text.format if req.text else None
    if fmt is None or fmt.type != "json_schema":
        out: dict[str, Any] = {"format": {"type": fmt.type if fmt else "text"}}
    else:
        out = {
            "format": {
                "type": "json_schema",
                "name": fmt.name,
                "schema": fmt.schema_,
                "description": fmt.description,
                "strict": bool(fmt.strict),
            }
        }
    out["verbosity"] = (req.text.verbosity if req.text else None) or "medium"
    return out


def response_skeleton(
    req: CreateResponse,
    *,
    response_id: str,
    created_at: int,
    tools: list[dict[str, Any]],
    tool_choice: Any,
) -> dict[str, Any]:
    """The Response object before any output: every field the spec requires, echoed."""
    reasoning = {"effort": None, "summary": None}
    if req.reasoning is not None:
        reasoning.update(req.reasoning.model_dump(exclude_none=True))
    conversation_id = req.conversation_id
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "completed_at": None,
        "status": "in_progress",
        "background": req.background,
        "conversation": {"id": conversation_id} if conversation_id else None,
        "error": None,
        "incomplete_details": None,
        "instructions": req.instructions,
        "max_output_tokens": req.max_output_tokens,
        "max_tool_calls": req.max_tool_calls,
        "metadata": req.metadata or {},
        "model": req.model,
        "output": [],
        "parallel_tool_calls": req.parallel_tool_calls is not False,
        "previous_response_id": req.previous_response_id,
        "prompt": None,
        "prompt_cache_key": req.prompt_cache_key,
        "prompt_cache_retention": req.prompt_cache_retention,
        "reasoning": reasoning,
        "safety_identifier": req.safety_identifier,
        "service_tier": req.service_tier or "default",
        "store": req.store,
        "temperature": req.temperature if req.temperature is not None else 1.0,
        "text": text_echo(req),
        "tool_choice": tool_choice,
        "tools": tools,
        "top_logprobs": req.top_logprobs or 0,
        "top_p": req.top_p if req.top_p is not None else 1.0,
        "truncation": req.truncation or "disabled",
        "usage": None,
        "user": req.user,
        "presence_penalty": 0.0,
        "frequency_penalty": 0.0,
    }
