"""Every create field, end to end: forwarded to the upstream, honored, or refused with a 400.

Each field of the `openai` SDK's create params gets one case here. A case sends the field
through Loom (under uvicorn) to the fake upstream, which records every request, and finds
out what happened to it: the upstream received it (forwarded), it had an observable effect
(honored), or the request was refused with a 400 naming it. The observation must match
what `loom.engine.params` declares, and the field lists must match the SDK's TypedDicts, so
a field the SDK grows without an entry in the mapping fails this test.
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from openai.types.chat import completion_create_params
from openai.types.responses import response_create_params

from loom.engine.params import CHAT_RULES, RESPONSES_EXTENSIONS, RESPONSES_RULES
from tests.support.schemas import validate_response
from tests.support.stream_validator import parse_sse, validate_stream
from tests.support.upstream import FakeUpstream, Turn

MODEL = "openai/gpt-4o"
TOOL = {
    "type": "function",
    "name": "lookup",
    "description": "Look a word up.",
    "parameters": {
        "type": "object",
        "properties": {"word": {"type": "string"}},
        "required": ["word"],
        "additionalProperties": False,
    },
}
CHAT_TOOL = {
    "type": "function",
    "function": {k: v for k, v in TOOL.items() if k != "type"},
}


def sdk_fields(typed_dict: type) -> set[str]:
    # `stream` lives in the streaming/non-streaming variants, not in the Base TypedDict.
    return set(typing.get_type_hints(typed_dict)) | {"stream"}


RESPONSES_SDK_FIELDS = sdk_fields(response_create_params.ResponseCreateParamsBase)
CHAT_SDK_FIELDS = sdk_fields(completion_create_params.CompletionCreateParamsBase)


@dataclass
class Outcome:
    status: int
    body: Any  # the JSON answer, or the list of SSE events
    upstream: list[dict[str, Any]]  # the request bodies the upstream received
    base: str  # Loom's URL

    @property
    def last(self) -> dict[str, Any]:
        return self.upstream[-1]


@dataclass
class Case:
    value: Any
    kind: str  # "forwarded" | "honored" | "refused"
    # forwarded: the chat field (and value) the upstream must receive
    sent_as: str | None = None
    sent_value: Any = None
    # honored: a check of the observable effect
    check: Callable[[Outcome], None] | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # other fields the case needs
    setup: Callable[[str, FakeUpstream], dict[str, Any]] | None = None  # more fields, made live
    param: str | None = None  # refused: the `param` of the 400 (default: the field)
    turn: Turn = field(default_factory=lambda: Turn(text="All good here."))


def fwd(sent_as: str, sent_value: Any = None, **kw: Any) -> dict[str, Any]:
    return {"kind": "forwarded", "sent_as": sent_as, "sent_value": sent_value, **kw}


def post(base: str, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{base}{path}", json=body, timeout=30)


# -- honored effects, Responses ----------------------------------------------------------------


def _completed_in_request(o: Outcome) -> None:
    assert o.body["status"] == "completed" and o.body["background"] is False


def _compaction_setup(_: str, upstream: FakeUpstream) -> dict[str, Any]:
    upstream.script(Turn(text="A summary of the context."))  # the compaction's own model call
    return {}


def _conversation_setup(base: str, _: FakeUpstream) -> dict[str, Any]:
    conv = post(base, "/v1/conversations", {}).json()
    return {"conversation": conv["id"]}


def _conversation_check(o: Outcome) -> None:
    conv_id = o.body["conversation"]["id"]
    items = httpx.get(f"{o.base}/v1/conversations/{conv_id}/items?order=asc").json()["data"]
    assert [i["type"] for i in items] == ["message", "message"]
    assert items[0]["content"][0]["text"] == "What is up?"


def _logprobs_check(o: Outcome) -> None:
    assert o.last["logprobs"] is True
    part = o.body["output"][0]["content"][0]
    assert part["logprobs"] and part["logprobs"][0]["token"] == "All"


def _previous_setup(base: str, upstream: FakeUpstream) -> dict[str, Any]:
    upstream.script(Turn(text="First answer."))
    first = post(base, "/v1/responses", {"model": MODEL, "input": "First question"}).json()
    return {"previous_response_id": first["id"]}


def _previous_check(o: Outcome) -> None:
    texts = [m["content"] for m in o.last["messages"]]
    assert texts == ["First question", "First answer.", "What is up?"]


def _prompt_setup(base: str, _: FakeUpstream) -> dict[str, Any]:
    prompt = post(base, "/v1/prompts", {"prompt": "Answer as a {{persona}}."}).json()
    return {"prompt": {"id": prompt["prompt_id"], "variables": {"persona": "pirate"}}}


def _prompt_check(o: Outcome) -> None:
    assert o.last["messages"][0] == {"role": "system", "content": "Answer as a pirate."}
    assert o.body["prompt"]["variables"] == {"persona": "pirate"}


def _store_false_check(o: Outcome) -> None:
    assert httpx.get(f"{o.base}/v1/responses/{o.body['id']}").status_code == 404


def _metadata_check(o: Outcome) -> None:
    stored = httpx.get(f"{o.base}/v1/responses/{o.body['id']}").json()
    assert stored["metadata"] == {"team": "blue"} == o.body["metadata"]


def _stream_check(o: Outcome) -> None:
    final = validate_stream(o.body)
    assert final["status"] == "completed"
    assert all("obfuscation" not in data for _, data in o.body)


def _truncation_check(o: Outcome) -> None:
    # `tiny-window` has a 256-token window (the upstream's /models says so): the oldest,
    # long message was dropped, the newer ones kept.
    assert [m["content"] for m in o.last["messages"]] == ["Noted.", "What is up?"]
    assert o.body["truncation"] == "auto"


def _service_tier_check(o: Outcome) -> None:
    assert o.last["service_tier"] == "flex"
    assert o.body["service_tier"] == "flex"  # what the upstream reported


def _cache_check(o: Outcome) -> None:
    assert o.last["prompt_cache_key"] == "user-42"
    assert o.body["usage"]["input_tokens_details"]["cached_tokens"] == 5


LONG_HISTORY = [
    {"role": "user", "content": "An old and very long message. " * 60},
    {"role": "assistant", "content": "Noted."},
]

RESPONSES_CASES: dict[str, Case] = {
    "access_programs": Case({"cyber": "standard"}, "refused"),
    "background": Case(False, "honored", check=_completed_in_request),
    "background_options": Case({"completion_window": "2h"}, "refused"),
    "context_management": Case(
        [{"type": "compaction", "compact_threshold": 1}],
        "honored",
        setup=_compaction_setup,
        check=lambda o: o.body["output"][0]["type"] == "compaction",
    ),
    "conversation": Case(None, "honored", setup=_conversation_setup, check=_conversation_check),
    "image": Case({"context_compression": "auto"}, "refused"),
    "include": Case(["message.output_text.logprobs"], "honored", check=_logprobs_check),
    "input": Case(
        "What is up?", "honored", check=lambda o: o.last["messages"][-1]["content"] == "What is up?"
    ),
    "instructions": Case(
        "Be brief.",
        "honored",
        check=lambda o: o.last["messages"][0] == {"role": "system", "content": "Be brief."},
    ),
    "max_output_tokens": Case(64, **fwd("max_tokens", 64)),
    "max_tool_calls": Case(
        0, "honored", extra={"tools": [TOOL]}, check=lambda o: o.last["tool_choice"] == "none"
    ),
    "metadata": Case({"team": "blue"}, "honored", check=_metadata_check),
    "model": Case(MODEL, "honored", check=lambda o: o.last["model"] == "gpt-4o"),
    "moderation": Case({"model": "omni-moderation-latest"}, "refused"),
    "parallel_tool_calls": Case(
        False, **fwd("parallel_tool_calls", False), extra={"tools": [TOOL]}
    ),
    "previous_response_id": Case(None, "honored", setup=_previous_setup, check=_previous_check),
    "prompt": Case(None, "honored", setup=_prompt_setup, check=_prompt_check),
    "prompt_cache_key": Case(
        "user-42", **fwd("prompt_cache_key", "user-42"), turn=Turn(text="ok", cached_tokens=5)
    ),
    "prompt_cache_options": Case({"ttl": "30m"}, **fwd("prompt_cache_options", {"ttl": "30m"})),
    "prompt_cache_retention": Case("24h", **fwd("prompt_cache_retention", "24h")),
    "reasoning": Case({"effort": "low"}, **fwd("reasoning_effort", "low")),
    "safety_identifier": Case("hash-1", **fwd("safety_identifier", "hash-1")),
    "service_tier": Case(
        "flex", **fwd("service_tier", "flex"), turn=Turn(text="ok", service_tier="flex")
    ),
    "store": Case(False, "honored", check=_store_false_check),
    "stream": Case(True, "honored", check=_stream_check),
    "stream_options": Case(
        {"include_obfuscation": False}, "honored", extra={"stream": True}, check=_stream_check
    ),
    "temperature": Case(0.5, **fwd("temperature", 0.5)),
    "text": Case({"verbosity": "low"}, **fwd("verbosity", "low")),
    "tool_choice": Case(
        "required",
        "honored",
        extra={"tools": [TOOL]},
        turn=Turn(tool_calls=[("lookup", {"word": "loom"})]),
        check=lambda o: (
            o.last["tool_choice"] == "required" and o.body["output"][0]["type"] == "function_call"
        ),
    ),
    "tools": Case(
        [TOOL],
        "honored",
        check=lambda o: (
            o.last["tools"][0]["function"]["name"] == "lookup"
            and o.body["tools"][0]["name"] == "lookup"
        ),
    ),
    "top_logprobs": Case(2, **fwd("top_logprobs", 2)),
    "top_p": Case(0.5, **fwd("top_p", 0.5)),
    "truncation": Case(
        "auto",
        "honored",
        extra={
            "model": "openai/tiny-window",
            "input": [*LONG_HISTORY, {"role": "user", "content": "What is up?"}],
        },
        check=_truncation_check,
    ),
    "user": Case("u-1", **fwd("user", "u-1")),
}
# Extra observations on the way back, checked with the forwarded value.
_MAPPED_BACK = {"service_tier": _service_tier_check, "prompt_cache_key": _cache_check}


def test_every_responses_field_has_a_case_and_a_rule():
    assert set(RESPONSES_CASES) == RESPONSES_SDK_FIELDS, "the SDK and these cases differ"
    known = set(RESPONSES_RULES) - {rule.name for rule in RESPONSES_EXTENSIONS}
    assert known == RESPONSES_SDK_FIELDS, "the SDK and engine/params.py differ"


def _run_responses(base: str, upstream: FakeUpstream, name: str, case: Case) -> Outcome:
    body: dict[str, Any] = {"model": MODEL, "input": "What is up?", **case.extra}
    if case.setup:
        body.update(case.setup(base, upstream))
    if case.value is not None:
        body[name] = case.value
    if name == "input":
        body["input"] = case.value
    upstream.requests.clear()
    upstream.script(case.turn)
    if body.get("stream"):
        with httpx.stream("POST", f"{base}/v1/responses", json=body, timeout=30) as response:
            raw = response.read()
        parsed: Any = parse_sse(raw) if response.status_code == 200 else response.json()
        return Outcome(response.status_code, parsed, list(upstream.requests), base)
    response = post(base, "/v1/responses", body)
    return Outcome(response.status_code, response.json(), list(upstream.requests), base)


@pytest.mark.parametrize("name", sorted(RESPONSES_CASES))
def test_responses_field(name, loom_server, upstream):
    case = RESPONSES_CASES[name]
    assert RESPONSES_RULES[name].remote == case.kind, f"engine/params.py says otherwise of {name}"
    outcome = _run_responses(loom_server.url, upstream, name, case)
    if case.kind == "refused":
        assert outcome.status == 400, outcome.body
        assert outcome.body["error"]["param"] == (case.param or name)
        assert outcome.body["error"]["type"] == "invalid_request_error"
        assert outcome.upstream == []
        return
    assert outcome.status == 200, outcome.body
    if not case.extra.get("stream") and name != "stream":
        validate_response(outcome.body)
    if case.kind == "forwarded":
        assert outcome.last[case.sent_as] == case.sent_value
        if name in _MAPPED_BACK:
            _MAPPED_BACK[name](outcome)
    else:
        result = case.check(outcome)
        assert result is None or result is True


# Values of honored fields that Loom cannot honor are refused, naming the exact sub-field.
PARTLY_REFUSED = [
    ({"background": True, "store": False}, "background"),  # background needs store
    (
        {"stream": True, "stream_options": {"include_obfuscation": True}},
        "stream_options.include_obfuscation",
    ),
    ({"include": ["no.such.thing"]}, "include"),
    ({"frequency_penalty": 0.5}, "frequency_penalty"),  # a chat field, not a Responses one
]


@pytest.mark.parametrize(("fields", "param"), PARTLY_REFUSED)
def test_values_loom_cannot_honor_are_refused(fields, param, loom_server, upstream):
    response = post(loom_server.url, "/v1/responses", {"model": MODEL, "input": "x", **fields})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param
    assert upstream.requests == []


# -- chat completions ---------------------------------------------------------------------------

CHAT_VALUES: dict[str, Any] = {
    "audio": {"voice": "alloy", "format": "wav"},
    "frequency_penalty": 0.5,
    "function_call": "auto",
    "functions": [CHAT_TOOL["function"]],
    "logit_bias": {"50256": -100},
    "logprobs": True,
    "max_completion_tokens": 50,
    "max_tokens": 50,
    "messages": None,  # always sent
    "metadata": {"team": "blue"},
    "modalities": ["text"],
    "model": None,  # always sent
    "moderation": {"model": "omni-moderation-latest"},
    "n": 1,
    "parallel_tool_calls": False,
    "prediction": {"type": "content", "content": "All good"},
    "presence_penalty": 0.5,
    "prompt_cache_key": "user-42",
    "prompt_cache_options": {"ttl": "30m"},
    "prompt_cache_retention": "24h",
    "reasoning_effort": "low",
    "response_format": {"type": "json_object"},
    "safety_identifier": "hash-1",
    "seed": 7,
    "service_tier": "flex",
    "stop": ["END"],
    "store": True,
    "stream": True,
    "stream_options": {"include_usage": True},
    "temperature": 0.5,
    "tool_choice": "auto",
    "tools": [CHAT_TOOL],
    "top_logprobs": 2,
    "top_p": 0.5,
    "user": "u-1",
    "verbosity": "low",
    "web_search_options": {"search_context_size": "low"},
}


def test_every_chat_field_has_a_case_and_a_rule():
    assert set(CHAT_VALUES) == CHAT_SDK_FIELDS, "the SDK and these cases differ"
    assert set(CHAT_RULES) == CHAT_SDK_FIELDS, "the SDK and engine/params.py differ"


def _chat_honored(name: str, base: str, body: dict[str, Any], upstream: FakeUpstream) -> None:
    """The observable effect of the chat fields Loom itself handles."""
    response = post(base, "/v1/chat/completions", body)
    assert response.status_code == 200, response.text
    sent = upstream.requests[-1]
    if name == "model":
        assert sent["model"] == "gpt-4o"
        return
    if name == "stream":
        assert response.headers["content-type"].startswith("text/event-stream")
        chunks = response.text.strip().split("\n\n")
        assert chunks[-1] == "data: [DONE]" and len(chunks) > 2
        assert sent["stream"] is True
        return
    # store / metadata: kept by Loom, not sent on
    assert name not in sent
    completion_id = response.json()["id"]
    stored = httpx.get(f"{base}/v1/chat/completions/{completion_id}")
    assert stored.status_code == 200
    if name == "metadata":
        assert stored.json()["metadata"] == {"team": "blue"}
        listed = httpx.get(f"{base}/v1/chat/completions", params={"metadata[team]": "blue"})
        assert [c["id"] for c in listed.json()["data"]] == [completion_id]


@pytest.mark.parametrize("name", sorted(CHAT_VALUES))
def test_chat_field(name, loom_server, upstream):
    rule = CHAT_RULES[name]
    body: dict[str, Any] = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}]}
    if CHAT_VALUES[name] is not None:
        body[name] = CHAT_VALUES[name]
    upstream.script(Turn(text="All good"))
    if rule.remote == "forwarded":
        response = post(loom_server.url, "/v1/chat/completions", body)
        assert response.status_code == 200, response.text
        assert upstream.requests[-1][name] == body[name]
    else:
        assert rule.remote == "honored"
        _chat_honored(name, loom_server.url, body, upstream)


def test_logprobs_stream_on_deltas_and_done_events(loom_server, upstream):
    upstream.script(Turn(text="All good here."))
    body = {
        "model": MODEL,
        "input": "Hi",
        "stream": True,
        "include": ["message.output_text.logprobs"],
        "top_logprobs": 2,
    }
    with httpx.stream("POST", f"{loom_server.url}/v1/responses", json=body, timeout=30) as r:
        events = parse_sse(r.read())
    final = validate_stream(events)
    deltas = [data for _, data in events if data["type"] == "response.output_text.delta"]
    assert [d["logprobs"][0]["token"] for d in deltas] == ["All", " good", " here."]
    assert all(len(d["logprobs"][0]["top_logprobs"]) == 2 for d in deltas)
    done = next(data for _, data in events if data["type"] == "response.output_text.done")
    assert done["logprobs"] == final["output"][0]["content"][0]["logprobs"]
    assert [p["token"] for p in done["logprobs"]] == ["All", " good", " here."]
    assert upstream.requests[-1]["logprobs"] is True


def test_no_logprobs_without_include(loom_server, upstream):
    # top_logprobs alone is forwarded, but, as on OpenAI, logprobs are shown only when
    # `include` asks for them.
    upstream.script(Turn(text="All good."))
    body = {"model": MODEL, "input": "Hi", "top_logprobs": 2}
    data = post(loom_server.url, "/v1/responses", body).json()
    assert data["output"][0]["content"][0]["logprobs"] == []
    assert data["top_logprobs"] == 2


def test_client_metadata_is_accepted_and_kept_off_the_upstream(loom_server, upstream):
    upstream.script(Turn(text="All good."))
    body = {"model": MODEL, "input": "x", "client_metadata": {"originator": "codex_exec"}}
    response = post(loom_server.url, "/v1/responses", body)
    assert response.status_code == 200, response.text
    assert RESPONSES_RULES["client_metadata"].remote == "honored"
    assert "client_metadata" not in upstream.requests[-1]
    assert "codex_exec" not in str(upstream.requests[-1])
