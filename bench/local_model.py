"""Speed of the embedded model (`local/smollm2-135m`): time to first chunk and tokens/second.

    .venv/bin/python -m bench.local_model
    .venv/bin/python -m bench.local_model --runs 7 --max-tokens 128

Drives `LocalProvider.stream_chat` in this process (no HTTP), so the figures are the model's
and the provider's own. Each scenario runs `--runs` times with a different seed, after one
warm-up request; medians are reported. Scenarios: a short and a ~400-token prompt, each
plain and grammar-constrained (a `json_schema` response format); and a forced tool call.
- ttft: from the request to its first chunk with content or a tool call. For a tool call
  the first chunk comes once the tool's name is generated, some 15 tokens in.
- tok/s: completion tokens after the first, over the time from first chunk to the end; for
  the tool call, all completion tokens over the whole request (prompt included).
- total ms: the whole request.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

from loom.config import LocalModelSettings
from loom.inference.local import LocalProvider

MODEL = "smollm2-135m"
SHORT = "Write a long story about a dragon who learns to fly."
# About 400 tokens of context before the question.
LONG = (
    "Here are my notes from the trip. "
    + " ".join(
        f"Day {d}: we walked along the river, visited the old market, tried the local bread "
        "and cheese, and talked with the people who run the small bookshop by the bridge."
        for d in range(1, 15)
    )
    + "\nWrite a long story based on these notes."
)
PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer"},
        "story": {"type": "string"},
        "friends": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["name", "age", "story", "friends"],
}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather for a location",
        "parameters": {
            "type": "object",
            "properties": {"location": {"type": "string"}},
            "required": ["location"],
        },
    },
}
SCENARIOS: dict[str, dict[str, Any]] = {
    "plain, short prompt": {"prompt": SHORT},
    "plain, ~400-token prompt": {"prompt": LONG},
    "json_schema, short prompt": {
        "prompt": SHORT,
        "response_format": {"type": "json_schema", "json_schema": {"name": "p", "schema": PERSON}},
    },
    "json_schema, ~400-token prompt": {
        "prompt": LONG,
        "response_format": {"type": "json_schema", "json_schema": {"name": "p", "schema": PERSON}},
    },
    "tool call (required), short prompt": {
        "prompt": "What's the weather in Paris?",
        "tools": [WEATHER],
        "tool_choice": "required",
    },
}


async def one_run(provider: LocalProvider, scenario: dict[str, Any], seed: int, max_tokens: int):
    body = {
        "model": MODEL,
        # A different first message each run, so no run reuses another's cached prompt.
        "messages": [
            {"role": "system", "content": f"Session {seed}. You are a helpful assistant."},
            {"role": "user", "content": scenario["prompt"]},
        ],
        "max_tokens": max_tokens,
        "seed": seed,
        "temperature": 0.7,
        "stream_options": {"include_usage": True},
        **{k: v for k, v in scenario.items() if k != "prompt"},
    }
    started = time.perf_counter()
    first = None
    usage: dict[str, int] = {}
    async for chunk in provider.stream_chat(body):
        for choice in chunk["choices"]:
            delta = choice["delta"]
            if first is None and (delta.get("content") or delta.get("tool_calls")):
                first = time.perf_counter()
        usage = chunk.get("usage") or usage
    ended = time.perf_counter()
    assert first is not None, "no output"
    tokens = usage["completion_tokens"]
    if "tools" in scenario:  # the first chunk comes well after the first token
        rate = tokens / (ended - started)
    else:
        rate = (tokens - 1) / (ended - first) if tokens > 1 and ended > first else float("nan")
    return first - started, rate, usage["prompt_tokens"], tokens, ended - started


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=128)
    args = parser.parse_args()
    provider = LocalProvider([LocalModelSettings(name=MODEL)])
    try:
        await one_run(provider, SCENARIOS["plain, short prompt"], 0, 8)  # load and warm up
        print(
            f"{'scenario':36} {'prompt':>6} {'output':>6} {'ttft ms':>8} {'tok/s':>6} "
            f"{'total ms':>8}"
        )
        for name, scenario in SCENARIOS.items():
            runs = [
                await one_run(provider, scenario, seed, args.max_tokens)
                for seed in range(1, args.runs + 1)
            ]
            ttft = statistics.median(r[0] for r in runs) * 1000
            rate = statistics.median(r[1] for r in runs)
            prompt = statistics.median(r[2] for r in runs)
            output = statistics.median(r[3] for r in runs)
            total = statistics.median(r[4] for r in runs) * 1000
            print(
                f"{name:36} {prompt:>6.0f} {output:>6.0f} {ttft:>8.0f} {rate:>6.1f} {total:>8.0f}"
            )
    finally:
        await provider.aclose()


if __name__ == "__main__":
    asyncio.run(main())
