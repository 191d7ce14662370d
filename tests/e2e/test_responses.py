"""The Responses API end to end: the `openai` SDK → Loom under uvicorn → a real upstream."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from tests.support.schemas import validate_response
from tests.support.stream_validator import parse_sse, validate_stream
from tests.support.upstream import Recordings, Turn

MODEL = "openai/gpt-4o"
WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "Get current temperature for a given location.",
    "parameters": {
        "type": "object",
        "properties": {"location": {"type": "string"}},
        "required": ["location"],
        "additionalProperties": False,
    },
}


def stream_events(client: openai.OpenAI, **kwargs) -> dict:
    """Create a streaming response; validate every event; return the final Response."""
    with client.responses.create(stream=True, **kwargs) as stream:
        events = [
            event.model_dump(mode="json", exclude_unset=True, by_alias=True) for event in stream
        ]
    return validate_stream(events)


def raw_stream(loom_server, body: dict) -> list:
    with httpx.stream(
        "POST", f"{loom_server.url}/v1/responses", json={**body, "stream": True}, timeout=30
    ) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        return parse_sse(response.read())


def create(client: openai.OpenAI, **kwargs) -> dict:
    response = client.responses.create(**kwargs)
    data = response.model_dump(mode="json", exclude_unset=True, by_alias=True)
    validate_response(data)
    return data


# -- basics -----------------------------------------------------------------------------------


def test_basic_non_streaming(client, upstream):
    upstream.script(Turn(text="Humans live on Earth.", prompt_tokens=20, completion_tokens=6))
    response = client.responses.create(model=MODEL, input="Which planet do humans live on?")
    validate_response(response.model_dump(mode="json", exclude_unset=True, by_alias=True))
    assert response.status == "completed"
    assert response.output_text == "Humans live on Earth."
    assert response.model == MODEL
    assert response.completed_at is not None and response.completed_at >= response.created_at
    assert response.usage.input_tokens == 20 and response.usage.output_tokens == 6
    assert response.usage.total_tokens == 26
    sent = upstream.requests[-1]
    assert sent["model"] == "gpt-4o"
    assert sent["messages"] == [{"role": "user", "content": "Which planet do humans live on?"}]
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    # defaults the spec requires are echoed
    assert response.temperature == 1.0 and response.top_p == 1.0
    assert response.tool_choice == "auto" and response.tools == []
    assert response.truncation == "disabled" and response.parallel_tool_calls is True
    assert response.text.format.type == "text"
    stored = client.responses.retrieve(response.id)
    assert stored.output_text == "Humans live on Earth."
    assert stored.status == "completed"


def test_basic_streaming_sdk_and_wire(client, loom_server, upstream):
    upstream.script(Turn(text="one two three four five"))
    final = stream_events(client, model=MODEL, input="count")
    assert final["output"][0]["content"][0]["text"] == "one two three four five"

    upstream.script(Turn(text="alpha beta gamma"))
    events = raw_stream(loom_server, {"model": MODEL, "input": "letters"})
    final = validate_stream(events)
    deltas = [e for _, e in events if e["type"] == "response.output_text.delta"]
    assert len(deltas) == 3
    assert final["status"] == "completed"
    assert client.responses.retrieve(final["id"]).output_text == "alpha beta gamma"


def test_sse_framing_is_one_write_per_event(loom_server, upstream):
    upstream.script(Turn(text="framing check"))
    with httpx.stream(
        "POST",
        f"{loom_server.url}/v1/responses",
        json={"model": MODEL, "input": "x", "stream": True},
    ) as response:
        raw = response.read().decode()
    blocks = [b for b in raw.split("\n\n") if b]
    for block in blocks:
        lines = block.split("\n")
        assert len(lines) == 2 and lines[0].startswith("event: ") and lines[1].startswith("data: ")
        assert json.loads(lines[1][6:])["type"] == lines[0][7:]


def test_multi_turn_chain(client, upstream):
    upstream.script(Turn(text="Humans live on Earth."), Turn(text="Earth."), Turn(text="Mars."))
    first = client.responses.create(
        model=MODEL, input="Which planet do humans live on?", instructions="Be brief."
    )
    second = client.responses.create(
        model=MODEL, input="Name it again.", previous_response_id=first.id
    )
    third = stream_events(
        client, model=MODEL, input="And the red one?", previous_response_id=second.id
    )
    assert second.previous_response_id == first.id
    assert third["previous_response_id"] == second.id
    # instructions apply to their own response only
    assert upstream.requests[0]["messages"][0] == {"role": "system", "content": "Be brief."}
    assert upstream.requests[2]["messages"] == [
        {"role": "user", "content": "Which planet do humans live on?"},
        {"role": "assistant", "content": "Humans live on Earth."},
        {"role": "user", "content": "Name it again."},
        {"role": "assistant", "content": "Earth."},
        {"role": "user", "content": "And the red one?"},
    ]


def test_replayed_recordings_chain(client, upstream):
    """Real gpt-4o traffic from the shared recordings serves as the upstream."""
    upstream.recordings = Recordings()
    first = client.responses.create(model=MODEL, input="Which planet do humans live on?")
    assert first.output_text == "Humans live on Earth."
    second = stream_events(
        client,
        model=MODEL,
        input="Repeat your previous response in all caps.",
        previous_response_id=first.id,
    )
    assert second["output"][0]["content"][0]["text"] == "HUMANS LIVE ON EARTH."
    assert second["usage"]["output_tokens"] > 0


def test_replayed_function_call_round_trip(client, upstream):
    upstream.recordings = Recordings()
    tool = {
        **WEATHER_TOOL,
        "parameters": {
            "type": "object",
            "additionalProperties": False,
            "required": ["location"],
            "properties": {
                "location": {
                    "type": "string",
                    "description": "City and country e.g. Bogotá, Colombia",
                }
            },
        },
    }
    first = stream_events(
        client, model=MODEL, input="What's the weather like in San Francisco?", tools=[tool]
    )
    (call,) = first["output"]
    assert call["type"] == "function_call" and call["name"] == "get_weather"
    assert json.loads(call["arguments"])["location"].startswith("San Francisco")
    second = client.responses.create(
        model=MODEL,
        previous_response_id=first["id"],
        tools=[tool],
        input=[
            {"type": "function_call_output", "call_id": call["call_id"], "output": "It is raining."}
        ],
    )
    assert "rain" in second.output_text


def test_instructions_system_message_and_image(client, upstream):
    upstream.script(Turn(text="Llamas."))
    response = create(
        client,
        model=MODEL,
        instructions="Answer in one word.",
        input=[
            {"role": "system", "content": "You are a zoologist."},
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "Identify the animal."},
                    {"type": "input_image", "image_url": "https://example.invalid/llama.jpg"},
                ],
            },
        ],
    )
    assert response["instructions"] == "Answer in one word."
    assert upstream.requests[-1]["messages"] == [
        {"role": "system", "content": "Answer in one word."},
        {"role": "system", "content": "You are a zoologist."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Identify the animal."},
                {
                    "type": "image_url",
                    "image_url": {"url": "https://example.invalid/llama.jpg", "detail": "auto"},
                },
            ],
        },
    ]


def test_replayed_image_input(client, upstream):
    upstream.recordings = Recordings()
    response = client.responses.create(
        model=MODEL,
        input=[
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "Identify the type of animal in this image."},
                    {
                        "type": "input_image",
                        "image_url": "https://upload.wikimedia.org/wikipedia/commons/f/f7/Llamas%2C_Vernagt-Stausee%2C_Italy.jpg",
                    },
                ],
            }
        ],
    )
    assert "llama" in response.output_text.lower()


def test_json_schema_output(client, upstream):
    schema = {
        "type": "object",
        "properties": {"capital": {"type": "string"}},
        "required": ["capital"],
        "additionalProperties": False,
    }
    upstream.script(Turn(text='{"capital": "Paris"}'))
    final = stream_events(
        client,
        model=MODEL,
        input="Capital of France?",
        text={
            "format": {"type": "json_schema", "name": "capitals", "schema": schema, "strict": True}
        },
    )
    assert json.loads(final["output"][0]["content"][0]["text"]) == {"capital": "Paris"}
    assert final["text"]["format"]["name"] == "capitals"
    assert final["text"]["format"]["schema"] == schema
    assert upstream.requests[-1]["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "capitals", "schema": schema, "strict": True},
    }
    upstream.script(Turn(text="{}"))
    create(client, model=MODEL, input="json", text={"format": {"type": "json_object"}})
    assert upstream.requests[-1]["response_format"] == {"type": "json_object"}


# -- function tools -----------------------------------------------------------------------


def test_function_call_round_trip(client, upstream):
    upstream.script(
        Turn(tool_calls=[("get_weather", {"location": "Paris"})]),
        Turn(text="It is sunny in Paris."),
    )
    first = stream_events(client, model=MODEL, input="Weather in Paris?", tools=[WEATHER_TOOL])
    assert first["status"] == "completed"
    (call,) = first["output"]
    assert call["type"] == "function_call" and call["status"] == "completed"
    assert call["id"].startswith("fc_") and call["call_id"]
    assert json.loads(call["arguments"]) == {"location": "Paris"}
    assert upstream.requests[-1]["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": WEATHER_TOOL["description"],
                "parameters": WEATHER_TOOL["parameters"],
            },
        }
    ]

    second = client.responses.create(
        model=MODEL,
        previous_response_id=first["id"],
        tools=[WEATHER_TOOL],
        input=[{"type": "function_call_output", "call_id": call["call_id"], "output": "sunny"}],
    )
    assert second.output_text == "It is sunny in Paris."
    messages = upstream.requests[-1]["messages"]
    assert messages[1] == {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {
                "id": call["call_id"],
                "type": "function",
                "function": {"name": "get_weather", "arguments": call["arguments"]},
            }
        ],
    }
    assert messages[2] == {"role": "tool", "tool_call_id": call["call_id"], "content": "sunny"}
    items = client.responses.input_items.list(second.id, order="asc")
    assert [i.type for i in items.data] == ["function_call_output"]


def test_parallel_function_calls_and_max_tool_calls(client, upstream):
    calls = [("get_weather", {"location": "Paris"}), ("get_weather", {"location": "Rome"})]
    upstream.script(Turn(tool_calls=calls))
    final = stream_events(client, model=MODEL, input="Paris and Rome?", tools=[WEATHER_TOOL])
    assert [json.loads(i["arguments"])["location"] for i in final["output"]] == ["Paris", "Rome"]
    assert len({i["call_id"] for i in final["output"]}) == 2

    upstream.script(Turn(tool_calls=calls))
    limited = create(
        client, model=MODEL, input="Paris and Rome?", tools=[WEATHER_TOOL], max_tool_calls=1
    )
    assert len(limited["output"]) == 1 and limited["max_tool_calls"] == 1

    upstream.script(Turn(tool_calls=calls))
    single = create(client, model=MODEL, input="x", tools=[WEATHER_TOOL], parallel_tool_calls=False)
    assert len(single["output"]) == 1
    assert upstream.requests[-1]["parallel_tool_calls"] is False


@pytest.mark.parametrize(
    ("choice", "sent"),
    [
        ("required", "required"),
        ("none", None),
        (
            {"type": "function", "name": "get_weather"},
            {"type": "function", "function": {"name": "get_weather"}},
        ),
        (
            {
                "type": "allowed_tools",
                "mode": "required",
                "tools": [{"type": "function", "name": "get_weather"}],
            },
            "required",
        ),
    ],
)
def test_tool_choice(client, upstream, choice, sent):
    other = {**WEATHER_TOOL, "name": "get_time"}
    upstream.script(Turn(text="ok"))
    response = create(
        client, model=MODEL, input="x", tools=[WEATHER_TOOL, other], tool_choice=choice
    )
    assert response["tool_choice"] == choice
    body = upstream.requests[-1]
    assert body.get("tool_choice") == sent
    if choice == "none":
        assert "tools" not in body
    elif isinstance(choice, dict) and choice["type"] == "allowed_tools":
        assert [t["function"]["name"] for t in body["tools"]] == ["get_weather"]


def test_max_output_tokens_gives_incomplete(client, upstream):
    upstream.script(Turn(text="a long answer cut", finish_reason="length"))
    final = stream_events(client, model=MODEL, input="x", max_output_tokens=16)
    assert final["status"] == "incomplete"
    assert final["incomplete_details"] == {"reason": "max_output_tokens"}
    assert final["output"][0]["status"] == "incomplete"
    assert upstream.requests[-1]["max_tokens"] == 16
    upstream.script(Turn(text="cut", finish_reason="length"))
    response = create(client, model=MODEL, input="x", max_output_tokens=16)
    assert response["status"] == "incomplete"
    assert client.responses.retrieve(response["id"]).status == "incomplete"


def test_reasoning_stream(client, upstream):
    upstream.script(Turn(reasoning="think about it", text="Answer."))
    final = stream_events(client, model=MODEL, input="x", reasoning={"effort": "low"})
    assert [i["type"] for i in final["output"]] == ["reasoning", "message"]
    assert final["output"][0]["content"] == [{"type": "reasoning_text", "text": "think about it"}]
    assert final["reasoning"]["effort"] == "low"
    assert upstream.requests[-1]["reasoning_effort"] == "low"


def test_echoed_fields(client, upstream):
    upstream.script(Turn(text="ok"))
    response = create(
        client,
        model=MODEL,
        input="x",
        metadata={"k": "v"},
        user="u-1",
        safety_identifier="s-1",
        prompt_cache_key="c-1",
        temperature=0.3,
        top_p=0.9,
        include=["message.output_text.logprobs"],
    )
    assert response["metadata"] == {"k": "v"} and response["user"] == "u-1"
    assert response["safety_identifier"] == "s-1" and response["prompt_cache_key"] == "c-1"
    assert response["temperature"] == 0.3 and response["top_p"] == 0.9
    sent = upstream.requests[-1]
    assert sent["temperature"] == 0.3 and sent["top_p"] == 0.9


# -- failures -------------------------------------------------------------------------------


def test_upstream_failure_mid_stream(client, upstream):
    upstream.script(Turn(text="this will break soon enough", fail_after=3))
    final = stream_events(client, model=MODEL, input="x")
    assert final["status"] == "failed"
    assert final["error"]["code"] == "server_error" and "openai" in final["error"]["message"]
    assert client.responses.retrieve(final["id"]).status == "failed"

    upstream.script(Turn(text="this will break soon enough", fail_after=3, fail_mode="error_event"))
    final = stream_events(client, model=MODEL, input="x")
    assert final["status"] == "failed" and "mid-stream" in final["error"]["message"]


@pytest.mark.parametrize("stream", [False, True])
def test_upstream_error_before_stream_is_http_error(client, upstream, stream):
    upstream.script(*[Turn(status=503, retry_after="0")] * 3)  # the first try and 2 retries
    with pytest.raises(openai.APIStatusError) as info:
        client.responses.create(model=MODEL, input="x", stream=stream)
    assert info.value.status_code == 502
    assert "openai" in info.value.message


def test_store_false(client, upstream):
    upstream.script(Turn(text="not kept"))
    response = client.responses.create(model=MODEL, input="x", store=False)
    assert response.store is False
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)
    with pytest.raises(openai.NotFoundError) as info:
        client.responses.create(model=MODEL, input="y", previous_response_id=response.id)
    assert info.value.body["code"] == "previous_response_not_found"
    assert info.value.body["param"] == "previous_response_id"


def test_not_found_errors(client, upstream):
    for call in (
        lambda: client.responses.retrieve("resp_missing"),
        lambda: client.responses.delete("resp_missing"),
        lambda: client.responses.input_items.list("resp_missing"),
    ):
        with pytest.raises(openai.NotFoundError) as info:
            call()
        assert info.value.body["type"] == "invalid_request_error"
    with pytest.raises(openai.NotFoundError) as info:
        client.responses.create(model="openai/no-such-model", input="x")
    assert "openai/gpt-4o" in info.value.message and info.value.body["param"] == "model"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": "x", "temperature": 5}, "temperature"),
        ({"input": "x", "max_output_tokens": 8}, "max_output_tokens"),
        ({"input": "x", "background": True, "store": False}, "background"),
        ({"input": "x", "top_p": "high"}, "top_p"),
        ({"input": [{"role": "robot", "content": "x"}]}, "input[0].role"),
        ({"input": [{"type": "function_call_output", "output": "x"}]}, "input[0].call_id"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image"}]}]},
            "input[0].content[0].image_url",
        ),
        ({"input": "x", "tools": [{"type": "function", "name": "bad name!"}]}, "tools[0].name"),
        ({"input": "x", "tool_choice": {"type": "function", "name": "nope"}}, "tool_choice.name"),
        ({"input": "x", "text": {"format": {"type": "json_schema"}}}, "text.format"),
        ({"input": "x", "metadata": {"k": 1}}, "metadata.k"),
        (
            {"input": "x", "conversation": "conv_1", "previous_response_id": "resp_1"},
            "conversation",
        ),
        ({}, "input"),
        ({"input": 5}, "input"),
    ],
)
def test_bad_input_is_400_naming_the_field(loom_server, upstream, body, param):
    response = httpx.post(f"{loom_server.url}/v1/responses", json={"model": MODEL, **body})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param, error
    assert not upstream.requests


def test_malformed_json_body(loom_server, upstream):
    response = httpx.post(
        f"{loom_server.url}/v1/responses",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400
    assert "JSON" in response.json()["error"]["message"]


# -- retrieve, list, delete, input items ----------------------------------------------------


def test_list_delete_and_input_items(client, upstream):
    upstream.default = Turn(text="ok")
    ids = [client.responses.create(model=MODEL, input=f"q{i}").id for i in range(5)]
    listing = httpx.get(
        f"{client.base_url}responses", params={"limit": 2, "order": "asc", "after": ids[0]}
    ).json()
    assert [r["id"] for r in listing["data"]] == ids[1:3] and listing["has_more"] is True
    newest = httpx.get(f"{client.base_url}responses", params={"limit": 1}).json()
    assert newest["data"][0]["id"] == ids[-1]

    response = client.responses.create(
        model=MODEL,
        input=[
            {"role": "user", "content": "a"},
            {"role": "user", "content": "b"},
            {"role": "user", "content": "c"},
        ],
    )
    desc = client.responses.input_items.list(response.id)
    assert [i.content[0].text for i in desc.data] == ["c", "b", "a"]
    asc = client.responses.input_items.list(response.id, order="asc", limit=2)
    assert [i.content[0].text for i in asc.data] == ["a", "b"] and asc.has_more
    after = client.responses.input_items.list(response.id, order="asc", after=asc.last_id)
    assert [i.content[0].text for i in after.data] == ["c"]

    deleted = client.responses.with_raw_response.delete(ids[0]).http_response.json()
    assert deleted == {"id": ids[0], "object": "response.deleted", "deleted": True}
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(ids[0])
