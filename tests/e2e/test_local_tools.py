"""Zero-config Loom: the embedded model calls tools and answers in a JSON schema, through
the Responses API and the `openai` SDK.

Only what a grammar guarantees is asserted. Every schema here bounds its strings and arrays,
so the longest output its grammar allows ends well within the token budget (a character
costs at most 6 tokens, as a `\\uXXXX` escape; an integer at most 17), and answers that
must have text are constrained to JSON."""

from __future__ import annotations

import json
import logging
import re

import httpx
import jsonschema
import openai
import pytest

from tests.conftest import run_loom
from tests.support.stream_validator import validate_stream

pytest_plugins = ["tests.support.mcp_server"]  # the MCP server fixtures

MODEL = "local/smollm2-135m"
WEATHER_PARAMS = {
    "type": "object",
    "properties": {"location": {"type": "string", "description": "A city", "maxLength": 40}},
    "required": ["location"],
    "additionalProperties": False,
}
GET_WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Get the current weather for a location",
    "parameters": WEATHER_PARAMS,
    "strict": True,
}
CITY = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 30},
        "population": {"type": "integer"},
        "districts": {"type": "array", "items": {"type": "string", "maxLength": 20}, "maxItems": 3},
    },
    "required": ["city", "population", "districts"],
    "additionalProperties": False,
}
CITY_FORMAT = {"format": {"type": "json_schema", "name": "city", "schema": CITY, "strict": True}}
# The longest CITY: 90 string characters (540 tokens), an integer (18) and about 60
# characters of keys, punctuation and spaces.
CITY_MAX_TOKENS = 650
# A reply the grammar makes certain to be a short JSON object with text in it.
ANSWER = {
    "type": "object",
    "properties": {"answer": {"type": "string", "maxLength": 40}},
    "required": ["answer"],
    "additionalProperties": False,
}
ANSWER_FORMAT = {"format": {"type": "json_schema", "name": "answer", "schema": ANSWER}}


@pytest.fixture(scope="module")
def local_client(tmp_path_factory):
    db = tmp_path_factory.mktemp("local-tools") / "loom.db"
    # No provider configured and no OPENAI_* variables: only the embedded model.
    # The MCP test server listens on loopback, which the URL guard refuses by default.
    env = {"LOOM_DB_URL": f"sqlite+aiosqlite:///{db}", "LOOM_MCP_ALLOW": "127.0.0.0/8"}
    with run_loom(env) as loom:
        yield openai.OpenAI(base_url=f"{loom.url}/v1", api_key="x", max_retries=0)


def events_of(stream) -> list[dict]:
    with stream:
        return [e.model_dump(mode="json", exclude_unset=True, by_alias=True) for e in stream]


def the_call(output: list[dict]) -> dict:
    [call] = [item for item in output if item["type"] == "function_call"]
    assert call["name"] == "get_weather" and call["call_id"]
    jsonschema.validate(json.loads(call["arguments"]), WEATHER_PARAMS)
    return call


def test_required_tool_call_then_answer(local_client):
    response = local_client.responses.create(
        model=MODEL,
        input="What's the weather in Paris?",
        tools=[GET_WEATHER],
        tool_choice="required",
    )
    assert response.status == "completed"
    call = the_call([item.model_dump() for item in response.output])

    answer = local_client.responses.create(
        model=MODEL,
        previous_response_id=response.id,
        input=[
            {
                "type": "function_call_output",
                "call_id": call["call_id"],
                "output": "Sunny, 21C",
            }
        ],
        text=ANSWER_FORMAT,
        max_output_tokens=300,  # above the longest ANSWER
    )
    assert answer.status == "completed"
    assert answer.output[-1].type == "message"
    jsonschema.validate(json.loads(answer.output_text), ANSWER)


def test_required_tool_call_then_answer_streaming(local_client):
    events = events_of(
        local_client.responses.create(
            model=MODEL,
            input="Is it raining in Tokyo?",
            tools=[GET_WEATHER],
            tool_choice="required",
            stream=True,
        )
    )
    final = validate_stream(events)
    assert final["status"] == "completed"
    call = the_call(final["output"])
    deltas = [e for e in events if e["type"] == "response.function_call_arguments.delta"]
    assert "".join(e["delta"] for e in deltas) == call["arguments"]

    events = events_of(
        local_client.responses.create(
            model=MODEL,
            previous_response_id=final["id"],
            input=[
                {"type": "function_call_output", "call_id": call["call_id"], "output": "Rain, 12C"}
            ],
            text=ANSWER_FORMAT,
            max_output_tokens=300,
            stream=True,
        )
    )
    final = validate_stream(events)
    assert final["status"] == "completed"
    jsonschema.validate(json.loads(final["output"][-1]["content"][0]["text"]), ANSWER)


def test_json_schema_text_format(local_client):
    response = local_client.responses.create(
        model=MODEL,
        input="Describe the city of Rome.",
        text=CITY_FORMAT,
        max_output_tokens=CITY_MAX_TOKENS,
    )
    assert response.status == "completed"
    jsonschema.validate(json.loads(response.output_text), CITY)


def test_json_schema_text_format_streaming(local_client):
    events = events_of(
        local_client.responses.create(
            model=MODEL,
            input="Describe London.",
            text=CITY_FORMAT,
            max_output_tokens=CITY_MAX_TOKENS,
            stream=True,
        )
    )
    final = validate_stream(events)
    assert final["status"] == "completed"
    jsonschema.validate(json.loads(final["output"][0]["content"][0]["text"]), CITY)


# -- an MCP tool, run by Loom, chosen by the embedded model --------------------------------


def test_mcp_call_with_the_embedded_model(local_client, mcp_server):
    tool = {
        "type": "mcp",
        "server_label": "chem",
        "server_url": mcp_server.http_url,
        "require_approval": "never",
        "allowed_tools": ["get_boiling_point"],
    }
    events = events_of(
        local_client.responses.create(
            model=MODEL,
            input="What is the boiling point of myawesomeliquid in Celsius?",
            tools=[tool],
            tool_choice="required",
            max_tool_calls=1,
            text=ANSWER_FORMAT,
            stream=True,
        )
    )
    # No max_output_tokens: the call's arguments (a string of at most 500 characters, the
    # grammar's own bound) are certain to end within the context window.
    final = validate_stream(events)
    kinds = [item["type"] for item in final["output"]]
    assert kinds == ["mcp_list_tools", "mcp_call", "message"], kinds
    call = final["output"][1]
    assert call["name"] == "get_boiling_point" and call["error"] is None
    assert isinstance(json.loads(call["arguments"])["liquid_name"], str)
    assert call["output"]
    # One call allowed: after it ran, the model is offered no tools and answers, in JSON.
    assert final["status"] == "completed"
    jsonschema.validate(json.loads(final["output"][-1]["content"][0]["text"]), ANSWER)


# -- cancellation ---------------------------------------------------------------------------


def test_closing_a_stream_stops_the_generation(local_client, caplog):
    caplog.set_level(logging.DEBUG, logger="loom.inference")
    base = str(local_client.base_url).rstrip("/")
    long_body = {
        "model": MODEL,
        "stream": True,
        "max_tokens": 2000,
        "messages": [{"role": "user", "content": "Write a very long story."}],
        # At least 200 characters: certain to be still generating after three chunks.
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "long", "schema": {"type": "string", "minLength": 200}},
        },
    }
    with httpx.stream("POST", f"{base}/chat/completions", json=long_body, timeout=60) as r:
        received = 0
        for line in r.iter_lines():
            if line.startswith("data: {"):
                received += 1
            if received >= 3:
                break
    short = {
        "model": MODEL,
        "stream": True,
        "max_tokens": 4,
        "messages": [{"role": "user", "content": "Hi"}],
    }
    # The model has one thread: this request is served once the cancelled one has returned.
    with httpx.stream("POST", f"{base}/chat/completions", json=short, timeout=60) as r:
        assert r.status_code == 200
        assert any(line == "data: [DONE]" for line in r.iter_lines())
    counts = [
        int(m[1])
        for m in (
            re.search(r"generation cancelled after (\d+) tokens", rec.getMessage())
            for rec in caplog.records
        )
        if m
    ]
    # Stopped when the client left, long before the 2000 tokens asked for (the count
    # includes the tokens made while the disconnect was on its way to the worker).
    assert len(counts) == 1 and counts[0] < 500, counts
