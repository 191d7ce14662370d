"""Tools and structured output from the embedded model, against the real SmolLM2 weights.

Grammar-constrained decoding must make the output valid whatever a 135M model would have
said: every forced call names an offered tool with arguments that validate against its
schema, and every json_schema reply validates against the schema.

These tests assert only what a grammar guarantees, never what the model chooses to write
(seeded output differs from one CPU build of llama.cpp to another). Where a test needs the
output to *end*, its schemas bound every string and array, so the longest output the grammar
allows fits in the token budget: a character costs at most 6 tokens (a `\\uXXXX` escape),
an integer at most 17, and the grammar forces the end-of-text token once the JSON is
complete."""

from __future__ import annotations

import json
import re

import jsonschema
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from loom.config import LocalModelSettings
from loom.errors import InvalidRequestError
from loom.inference.local import LocalProvider
from loom.inference.local.grammar import (
    CALL_MARKER,
    CALL_TRIGGER,
    MAX_ARRAY_ITEMS,
    MAX_STRING_CHARS,
    answer_grammar,
    call_grammar,
)
from loom.inference.local.request import parse_request
from loom.inference.local.worker import CallArguments, CallStart, CallWriter, Reply

MODEL = "smollm2-135m"
WEATHER_PARAMS = {
    "type": "object",
    "properties": {"location": {"type": "string", "description": "A city", "maxLength": 40}},
    "required": ["location"],
}
TIME_PARAMS = {
    "type": "object",
    "properties": {
        "timezone": {"type": "string", "maxLength": 40},
        "format": {"type": "string", "enum": ["12h", "24h"]},
    },
    "required": ["timezone", "format"],
}


def tool(name: str, parameters: dict, description: str) -> dict:
    return {
        "type": "function",
        "function": {"name": name, "description": description, "parameters": parameters},
    }


GET_WEATHER = tool("get_weather", WEATHER_PARAMS, "Get the current weather for a location")
GET_TIME = tool("get_time", TIME_PARAMS, "Get the current time in a timezone")
SCHEMAS = {"get_weather": WEATHER_PARAMS, "get_time": TIME_PARAMS}
PROMPTS = [
    "What's the weather in Paris?",
    "Is it raining in Tokyo right now?",
    "Tell me a joke.",
    "How warm is it in Buenos Aires today?",
]


@pytest.fixture(scope="module")
async def provider():
    local = LocalProvider([LocalModelSettings(name=MODEL)])
    yield local
    await local.aclose()


def ask(text: str, **extra) -> dict:
    return {"model": MODEL, "messages": [{"role": "user", "content": text}], **extra}


async def stream_call(provider: LocalProvider, body: dict) -> tuple[dict, list[dict]]:
    """The one tool call a stream makes ({"id", "name", "arguments"}), and its chunks,
    checking the chunks have the shape OpenAI's are."""
    chunks = [
        c async for c in provider.stream_chat({**body, "stream_options": {"include_usage": True}})
    ]
    for chunk in chunks:
        ChatCompletionChunk.model_validate(chunk)
    *body_chunks, finish, usage = chunks
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] > 0
    assert finish["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "tool_calls",
    }
    head, *argument_chunks = body_chunks
    delta = head["choices"][0]["delta"]
    assert delta["role"] == "assistant" and delta["content"] is None
    [call] = delta["tool_calls"]
    assert call["index"] == 0 and call["type"] == "function" and call["id"].startswith("call_")
    assert call["function"]["arguments"] == ""
    assert argument_chunks
    arguments = ""
    for chunk in argument_chunks:
        [piece] = chunk["choices"][0]["delta"]["tool_calls"]
        assert set(piece) == {"index", "function"} and piece["index"] == 0
        arguments += piece["function"]["arguments"]
    return {"id": call["id"], "name": call["function"]["name"], "arguments": arguments}, chunks


def assert_valid_call(call: dict, offered: set[str]) -> dict:
    assert call["name"] in offered, call
    arguments = json.loads(call["arguments"])
    jsonschema.validate(arguments, SCHEMAS[call["name"]])
    return arguments


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("prompt", PROMPTS)
async def test_required_call_streams_a_valid_call(provider, prompt, seed):
    body = ask(prompt, tools=[GET_WEATHER], tool_choice="required", seed=seed, temperature=0.8)
    call, _ = await stream_call(provider, body)
    assert_valid_call(call, {"get_weather"})


@pytest.mark.parametrize("prompt", PROMPTS[:3])
async def test_named_call_streams_a_valid_call_to_that_tool(provider, prompt):
    choice = {"type": "function", "function": {"name": "get_weather"}}
    body = ask(prompt, tools=[GET_TIME, GET_WEATHER], tool_choice=choice, seed=5)
    call, _ = await stream_call(provider, body)
    assert_valid_call(call, {"get_weather"})


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize(
    "choice", ["required", {"type": "function", "function": {"name": "get_weather"}}]
)
async def test_forced_call_non_streaming(provider, choice, seed):
    body = ask("Weather in Rome, please.", tools=[GET_WEATHER], tool_choice=choice, seed=seed)
    completion = await provider.chat(body)
    ChatCompletion.model_validate(completion)
    choice_ = completion["choices"][0]
    assert choice_["finish_reason"] == "tool_calls"
    message = choice_["message"]
    assert message["content"] is None
    [call] = message["tool_calls"]
    assert call["id"].startswith("call_") and call["type"] == "function"
    assert_valid_call(call["function"], {"get_weather"})


@pytest.mark.parametrize(
    "prompt",
    [
        "What time is it in Berlin? Use 24h.",
        "What's the weather in Oslo?",
        "Tell me the time in Europe/London.",
        "Hello!",
    ],
)
async def test_required_with_two_tools_calls_one_of_them_validly(provider, prompt):
    body = ask(prompt, tools=[GET_WEATHER, GET_TIME], tool_choice="required", seed=11)
    call, _ = await stream_call(provider, body)
    assert_valid_call(call, {"get_weather", "get_time"})


async def test_a_tool_can_have_no_parameters(provider):
    ping = {"type": "function", "function": {"name": "ping"}}
    completion = await provider.chat(ask("Ping the server.", tools=[ping], tool_choice="required"))
    [call] = completion["choices"][0]["message"]["tool_calls"]
    assert call["function"]["name"] == "ping"
    assert isinstance(json.loads(call["function"]["arguments"]), dict)


async def test_schemas_with_the_same_def_names_do_not_clash(provider):
    def with_item(item: dict) -> dict:
        return {
            "type": "object",
            "properties": {"item": {"$ref": "#/$defs/Item"}},
            "required": ["item"],
            "$defs": {"Item": item},
        }

    numbers = with_item(
        {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    )
    words = with_item(
        {
            "type": "object",
            "properties": {"w": {"type": "string", "maxLength": 40}},
            "required": ["w"],
        }
    )
    tools = [tool("count", numbers, "Count"), tool("say", words, "Say")]
    for name, schema, prompt in (
        ("count", numbers, "Count to three."),
        ("say", words, "Say hello to Bob."),
    ):
        choice = {"type": "function", "function": {"name": name}}
        body = ask(prompt, tools=tools, tool_choice=choice, seed=3)
        [call] = (await provider.chat(body))["choices"][0]["message"]["tool_calls"]
        assert call["function"]["name"] == name
        jsonschema.validate(json.loads(call["function"]["arguments"]), schema)


async def test_a_forced_call_is_not_cut_by_stop_sequences(provider):
    body = ask("Weather in Lima?", tools=[GET_WEATHER], tool_choice="required", stop=["}", '"'])
    [call] = (await provider.chat(body))["choices"][0]["message"]["tool_calls"]
    assert_valid_call(call["function"], {"get_weather"})


async def test_a_forced_call_cut_by_max_tokens_ends_with_length(provider):
    body = ask("Weather in Lima?", tools=[GET_WEATHER], tool_choice="required", max_tokens=3)
    completion = await provider.chat(body)
    assert completion["choices"][0]["finish_reason"] == "length"
    assert completion["usage"]["completion_tokens"] == 3


PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 20},
        "age": {"type": "integer"},
        "pets": {
            "type": "array",
            "maxItems": 2,
            "items": {
                "type": "object",
                "properties": {
                    "kind": {"type": "string", "maxLength": 10},
                    "ages": {"type": "array", "items": {"type": "integer"}, "maxItems": 3},
                },
                "required": ["kind", "ages"],
            },
        },
    },
    "required": ["name", "age", "pets"],
}
# PERSON with no bounds of its own: the grammar adds them (MAX_STRING_CHARS, MAX_ARRAY_ITEMS).
OPEN_PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer"},
        "pets": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "kind": {"type": "string"},
                    "ages": {"type": "array", "items": {"type": "integer"}},
                },
                "required": ["kind", "ages"],
            },
        },
    },
    "required": ["name", "age", "pets"],
}
# The longest PERSON the grammar allows: 40 characters of strings (240 tokens at most), 7
# integers with their optional spaces (126), and about 120 characters of keys, punctuation
# and optional spaces: under 500 tokens, each token being at least one character.
PERSON_MAX_TOKENS = 500


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("stream", [False, True])
async def test_json_schema_output_validates(provider, seed, stream):
    body = ask(
        "Describe a person and their pets.",
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "person", "schema": PERSON},
        },
        seed=seed,
        max_tokens=PERSON_MAX_TOKENS,
    )
    if stream:
        chunks = [c async for c in provider.stream_chat(body)]
        text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
        finish = chunks[-1]["choices"][0]["finish_reason"]
    else:
        completion = await provider.chat(body)
        text = completion["choices"][0]["message"]["content"]
        finish = completion["choices"][0]["finish_reason"]
    assert finish == "stop", text  # certain: the grammar's longest output fits the budget
    jsonschema.validate(json.loads(text), PERSON)


@pytest.mark.parametrize("seed", [1, 2])
async def test_json_object_output_is_an_object_whenever_it_ends(provider, seed):
    """Any JSON object has no length bound (its properties and nesting are open), so the
    model may still be writing when `max_tokens` runs out. What the grammar guarantees: the
    output is the start of an object, and whenever it ends by itself it is a whole one."""
    body = ask(
        "List three colours as JSON.",
        response_format={"type": "json_object"},
        seed=seed,
        max_tokens=200,
    )
    completion = await provider.chat(body)
    choice = completion["choices"][0]
    text = choice["message"]["content"]
    assert text.startswith("{"), text
    if choice["finish_reason"] == "stop":
        assert isinstance(json.loads(text), dict)
    else:
        assert choice["finish_reason"] == "length"
        assert completion["usage"]["completion_tokens"] == 200


@pytest.mark.parametrize("prompt", PROMPTS)
async def test_auto_gives_text_or_a_valid_call(provider, prompt):
    """The model chooses between text and a call; either way the reply is well formed: a
    call that ends is valid, and text never begins like a call (that start means a call)."""
    body = ask(prompt, tools=[GET_WEATHER, GET_TIME], tool_choice="auto", seed=4, max_tokens=60)
    completion = await provider.chat(body)
    ChatCompletion.model_validate(completion)
    choice = completion["choices"][0]
    message = choice["message"]
    if choice["finish_reason"] == "tool_calls":
        assert message["content"] is None
        [call] = message["tool_calls"]
        assert_valid_call(call["function"], {"get_weather", "get_time"})
    else:
        assert choice["finish_reason"] in ("stop", "length")
        assert not (message["content"] or "").lstrip().startswith(CALL_TRIGGER)


async def test_auto_with_a_response_format_gives_json_or_a_valid_call(provider):
    answer = {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 20}, "sunny": {"type": "boolean"}},
        "required": ["city", "sunny"],
    }
    # The longest call (a 40-character location) or answer the grammar allows is under 400
    # tokens, so the reply always ends by itself: as a valid call or a valid answer.
    for seed in (1, 2):
        body = ask(
            "What's the weather in Paris?",
            tools=[GET_WEATHER],
            response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": answer}},
            seed=seed,
            max_tokens=400,
        )
        choice = (await provider.chat(body))["choices"][0]
        message = choice["message"]
        if message.get("tool_calls"):
            assert choice["finish_reason"] == "tool_calls"
            assert_valid_call(message["tool_calls"][0]["function"], {"get_weather"})
        else:
            assert choice["finish_reason"] == "stop", message
            jsonschema.validate(json.loads(message["content"]), answer)


async def test_auto_after_a_call_in_the_history_gives_text_or_a_valid_call(provider):
    # An earlier turn shows the model how a call looks. Whether it starts one by itself is
    # its choice; if it does, the call is regenerated under the call grammar and is valid.
    history = [
        {"role": "user", "content": "What's the weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"location": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "Sunny, 21C"},
        {"role": "assistant", "content": "It is sunny and 21C in Paris."},
    ]
    for city in ("Madrid", "Oslo"):
        body = ask(f"What's the weather in {city}?", tools=[GET_WEATHER], temperature=0)
        body["messages"] = history + body["messages"]
        body["max_tokens"] = 300  # above the longest call the grammar allows
        choice = (await provider.chat(body))["choices"][0]
        if choice["finish_reason"] == "tool_calls":
            [call] = choice["message"]["tool_calls"]
            assert_valid_call(call["function"], {"get_weather"})
        else:
            assert not (choice["message"]["content"] or "").lstrip().startswith(CALL_TRIGGER)


def test_a_reply_that_starts_a_call_in_auto_restarts_under_the_call_grammar():
    """What the model does not decide: once an unconstrained "auto" reply begins with the
    call marker, it is thrown away and regenerated as a call; any other start is text."""
    request = parse_request(ask("hi", tools=[GET_WEATHER]))
    assert request.calls == "auto" and request.grammar is None and request.call_grammar
    out: list = []
    reply = Reply(request, out.append)
    assert reply.feed("  <to") is None  # it may still become a call: nothing is sent yet
    assert reply.feed("ol_call>") == "restart"
    assert out == []
    text: list = []
    reply = Reply(request, text.append)
    assert reply.feed(" <b>") is None and reply.feed("hello") is None
    assert reply.finish("stop") == "stop"
    assert "".join(text) == " <b>hello"


def test_stop_sequences_cut_text_replies_and_are_not_sent():
    request = parse_request(ask("hi", stop=["END"]))
    out: list = []
    reply = Reply(request, out.append)
    assert reply.feed("one two E") is None
    assert reply.feed("N") is None
    assert reply.feed("D three") == "stop"
    assert reply.finish("stop") == "stop"
    assert "".join(out) == "one two "


async def test_tool_choice_none_gives_plain_text(provider):
    body = ask(
        "What's the weather in Paris?", tools=[GET_WEATHER], tool_choice="none", max_tokens=20
    )
    completion = await provider.chat(body)
    assert completion["choices"][0]["finish_reason"] in ("stop", "length")
    assert "tool_calls" not in completion["choices"][0]["message"]


async def test_stop_applies_to_constrained_answers(provider):
    # The grammar makes the output exactly this object (spaces aside), so the stop sequence
    # is certain to come, and what precedes it is known.
    const = {
        "type": "object",
        "properties": {"words": {"const": "one two three five six"}},
        "required": ["words"],
    }
    body = ask(
        "Say some words.",
        response_format={"type": "json_schema", "json_schema": {"name": "w", "schema": const}},
        seed=1,
        stop=["five"],
    )
    cut = await provider.chat(body)
    assert cut["choices"][0]["finish_reason"] == "stop"
    assert re.fullmatch(r'\{ ?"words" ?: ?"one two three ', cut["choices"][0]["message"]["content"])
    # PERSON's grammar writes "age" right after a name of at most 20 characters.
    body = ask(
        "Describe a person.",
        response_format={"type": "json_schema", "json_schema": {"name": "p", "schema": PERSON}},
        seed=1,
        stop=['"age"'],
    )
    cut = await provider.chat(body)
    assert cut["choices"][0]["finish_reason"] == "stop"
    assert cut["choices"][0]["message"]["content"].startswith("{")
    assert '"age"' not in cut["choices"][0]["message"]["content"]


async def test_tool_results_in_the_history_get_an_answer(provider):
    body = ask("What's the weather in Paris?", tools=[GET_WEATHER], max_tokens=30, seed=1)
    body["messages"] += [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_9",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"location": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_9", "content": "Sunny, 21C"},
    ]
    request = parse_request(body)
    assert "Result of get_weather:\nSunny, 21C" in request.messages[-1]["content"]
    assert f'{CALL_MARKER}{{"name": "get_weather"' in request.messages[-2]["content"]
    completion = await provider.chat({**body, "tool_choice": "none"})
    assert completion["choices"][0]["finish_reason"] in ("stop", "length")
    assert "tool_calls" not in completion["choices"][0]["message"]


async def test_bad_tools_and_formats_are_invalid_requests(provider):
    cases = [
        (ask("hi", tools={}), "tools"),
        (ask("hi", tools=[{"type": "web_search"}]), "tools[0].type"),
        (ask("hi", tools=[{"type": "function"}]), "tools[0]"),
        (
            ask("hi", tools=[{"type": "function", "function": {"name": "a b"}}]),
            "tools[0].function.name",
        ),
        (
            ask("hi", tools=[{"type": "function", "function": {"name": "f", "parameters": []}}]),
            "tools[0].function.parameters",
        ),
        (ask("hi", tools=[GET_WEATHER], tool_choice="sometimes"), "tool_choice"),
        (ask("hi", tool_choice="required"), "tool_choice"),
        (
            ask(
                "hi",
                tools=[GET_WEATHER],
                tool_choice={"type": "function", "function": {"name": "x"}},
            ),
            "tool_choice",
        ),
        (ask("hi", response_format={"type": "xml"}), "response_format"),
        (
            ask("hi", response_format={"type": "json_schema", "json_schema": {"name": "x"}}),
            "response_format.json_schema.schema",
        ),
    ]
    for body, param in cases:
        with pytest.raises(InvalidRequestError) as err:
            await provider.chat(body)
        assert err.value.param == param, (param, err.value.message)


async def test_a_schema_the_converter_cannot_follow_is_an_invalid_request(provider):
    body = ask(
        "hi",
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "x", "schema": {"type": "tuple"}},
        },
    )
    with pytest.raises(InvalidRequestError, match="JSON schema"):
        await provider.chat(body)


def test_grammars_are_cached_and_distinct():
    tools = [{"name": "get_weather", "parameters": WEATHER_PARAMS}]
    assert call_grammar(tools) is call_grammar(tools)
    assert answer_grammar(OPEN_PERSON) is answer_grammar(OPEN_PERSON)
    assert call_grammar(tools) != answer_grammar(None)


def test_open_strings_and_arrays_are_bounded_so_output_always_ends():
    grammar = answer_grammar(OPEN_PERSON)
    assert f"char{{0,{MAX_STRING_CHARS}}}" in grammar and "char*" not in grammar
    assert grammar.count("answer-integer") > MAX_ARRAY_ITEMS  # ages: up to 64 items
    generic = answer_grammar(None)
    assert f"{{0,{MAX_ARRAY_ITEMS - 1}}}" in generic and "char*" not in generic
    bounded = {"type": "array", "items": {"type": "string", "maxLength": 3}, "maxItems": 2}
    assert "{0,500}" not in answer_grammar(bounded)


def test_call_writer_streams_arguments_without_the_closing_brace():
    out: list = []
    writer = CallWriter(out.append)
    for piece in [
        CALL_MARKER,
        '{"name": "get',
        '_weather", "arguments": ',
        '{"location"',
        ': "P}',
        'aris"}',
        " }",
        " ",
    ]:
        writer.feed(piece)
    assert writer.finish(complete=True)
    assert out[0] == CallStart("get_weather")
    assert all(isinstance(p, CallArguments) for p in out[1:])
    assert "".join(p.text for p in out[1:]) == '{"location": "P}aris"}'
