"""`POST /v1/responses/input_tokens`: the same body as create, counted, nothing created."""

from __future__ import annotations

import math

import httpx
import openai
import pytest

from tests.conftest import run_loom
from tests.support.upstream import Turn

MODEL = "openai/gpt-4o"


def count(loom_server, **body) -> int:
    response = httpx.post(f"{loom_server.url}/v1/responses/input_tokens", json=body, timeout=60)
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["object"] == "response.input_tokens"
    return data["input_tokens"]


def test_estimate_for_a_remote_model_follows_the_documented_rule(loom_server, upstream):
    # 40 characters → 10 tokens, + 3 for the message, + 3 for the reply's priming.
    assert count(loom_server, model=MODEL, input="abcd" * 10) == 16
    # Instructions are one more message: 8 characters → 2, + 3.
    assert count(loom_server, model=MODEL, input="abcd" * 10, instructions="x" * 8) == 21
    assert count(loom_server, input="abcd" * 10) == 16  # model is optional here
    assert upstream.requests == []  # counting never calls the model


def test_tools_history_and_conversation_count(client, loom_server, upstream):
    tool = {"type": "function", "name": "lookup", "parameters": {"type": "object"}}
    bare = count(loom_server, model=MODEL, input="hello")
    assert count(loom_server, model=MODEL, input="hello", tools=[tool]) > bare
    reply = "A reply of some length, to be counted."
    upstream.script(Turn(text=reply))
    first = client.responses.create(model=MODEL, input="hello")
    chained = count(loom_server, model=MODEL, input="hello", previous_response_id=first.id)
    # history "hello" + the reply, then the new "hello": three messages.
    assert chained == math.ceil((5 + len(reply) + 5) / 4) + 3 * 3 + 3
    conversation = client.conversations.create(items=[{"role": "user", "content": "x" * 400}])
    in_conv = count(loom_server, model=MODEL, input="hello", conversation=conversation.id)
    assert in_conv == bare + 100 + 3


def test_sdk_and_errors(client, loom_server, upstream):
    result = client.responses.input_tokens.count(model=MODEL, input="abcd" * 10)
    assert (result.object, result.input_tokens) == ("response.input_tokens", 16)
    with pytest.raises(openai.NotFoundError) as missing:
        client.responses.input_tokens.count(model=MODEL, input="x", previous_response_id="resp_x")
    assert missing.value.body["code"] == "previous_response_not_found"
    bad = httpx.post(
        f"{loom_server.url}/v1/responses/input_tokens", json={"model": MODEL, "input": 3}
    )
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "input"


@pytest.fixture(scope="module")
def local_loom(tmp_path_factory):
    db = tmp_path_factory.mktemp("local-count") / "loom.db"
    with run_loom({"LOOM_DB_URL": f"sqlite+aiosqlite:///{db}"}) as server:
        yield server


def test_embedded_model_counts_with_its_own_tokenizer(local_loom):
    """The count equals the prompt tokens the model then actually evaluates."""
    local = "local/smollm2-135m"
    body = {"model": local, "input": "Name three colours.", "instructions": "Be brief."}
    counted = count(local_loom, **body)
    client = openai.OpenAI(base_url=f"{local_loom.url}/v1", api_key="x", max_retries=0)
    response = client.responses.create(**body, max_output_tokens=16)
    assert response.usage.input_tokens == counted
