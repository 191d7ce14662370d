"""Chat Completions, Models, Embeddings and operations endpoints, end to end."""

from __future__ import annotations

import httpx
import openai
import pytest
from openai.types import CreateEmbeddingResponse
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from tests.conftest import run_loom
from tests.support.servers import free_port
from tests.support.upstream import Turn

MESSAGES = [{"role": "user", "content": "Say hello"}]


def test_chat_non_streaming(client, upstream):
    upstream.script(Turn(text="Hello there", prompt_tokens=5, completion_tokens=2))
    completion = client.chat.completions.create(model="openai/gpt-4o", messages=MESSAGES)
    ChatCompletion.model_validate(completion.model_dump())
    assert completion.choices[0].message.content == "Hello there"
    assert completion.usage.prompt_tokens == 5 and completion.usage.total_tokens == 7
    assert upstream.requests[-1]["model"] == "gpt-4o"
    assert upstream.requests[-1]["messages"] == MESSAGES


def test_chat_streaming_passes_chunks_and_usage_through(client, upstream):
    upstream.script(Turn(text="one two three", prompt_tokens=4, completion_tokens=3))
    stream = client.chat.completions.create(
        model="openai/gpt-4o",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    for chunk in chunks:
        ChatCompletionChunk.model_validate(chunk.model_dump())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "one two three"
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == 7
    assert upstream.requests[-1]["stream_options"] == {"include_usage": True}


def test_stored_chat_completions(client, upstream):
    upstream.default = Turn(text="stored answer")
    made = [
        client.chat.completions.create(
            model="openai/gpt-4o",
            messages=[{"role": "user", "content": f"q{i}"}],
            metadata={"n": str(i)},
        )
        for i in range(3)
    ]
    streamed = client.chat.completions.create(
        model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "s"}], stream=True
    )
    (stream_id,) = {c.id for c in streamed}
    got = client.chat.completions.retrieve(made[0].id)
    assert got.choices[0].message.content == "stored answer"
    got_stream = client.chat.completions.retrieve(stream_id)
    assert got_stream.choices[0].message.content == "stored answer"
    messages = client.chat.completions.messages.list(made[1].id)
    assert [m.content for m in messages.data] == ["q1"]
    page = client.chat.completions.list(limit=2, order="asc")
    assert len(page.data) == 2 and page.has_more
    by_model = client.chat.completions.list(model="gpt-4o-mini")
    assert [c.id for c in by_model.data] == [stream_id]
    deleted = client.chat.completions.delete(made[2].id)
    assert deleted.deleted is True
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.retrieve(made[2].id)
    upstream.script(Turn(text="gone"))
    unstored = client.chat.completions.create(model="openai/gpt-4o", messages=MESSAGES, store=False)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.retrieve(unstored.id)
    assert "store" not in upstream.requests[-1] and "metadata" not in upstream.requests[-1]


def test_models(client, upstream):
    ids = [m.id for m in client.models.list()]
    assert "openai/gpt-4o" in ids and "openai/text-embedding-3-small" in ids
    assert client.models.retrieve("openai/gpt-4o").id == "openai/gpt-4o"
    with pytest.raises(openai.NotFoundError) as info:
        client.models.retrieve("openai/nope")
    assert "openai/gpt-4o" in info.value.message
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="nope", messages=MESSAGES)
    assert info.value.body["code"] == "model_not_found"


def test_embeddings(client, upstream):
    result = client.embeddings.create(model="openai/text-embedding-3-small", input=["a", "b"])
    CreateEmbeddingResponse.model_validate(result.model_dump())
    assert len(result.data) == 2 and len(result.data[0].embedding) == 16
    assert upstream.requests[-1]["model"] == "text-embedding-3-small"


def test_health_and_openapi(loom_server):
    health = httpx.get(f"{loom_server.url}/v1/health")
    assert health.status_code == 200
    assert health.json() == {"status": "OK", "database": "ok"}
    spec = httpx.get(f"{loom_server.url}/openapi.json").json()
    for path in ("/v1/responses", "/v1/chat/completions", "/v1/models", "/v1/embeddings"):
        assert path in spec["paths"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": MESSAGES}, "model"),
        ({"model": "openai/gpt-4o"}, "messages"),
        ({"model": "openai/gpt-4o", "messages": []}, "messages"),
        ({"model": "openai/gpt-4o", "messages": [{"content": "x"}]}, "messages"),
        ({"model": "openai/gpt-4o", "messages": MESSAGES, "metadata": {"a": 1}}, "metadata.a"),
    ],
)
def test_bad_chat_body_is_400(loom_server, upstream, body, param):
    response = httpx.post(f"{loom_server.url}/v1/chat/completions", json=body)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param
    assert not upstream.requests


def test_unknown_route_and_bad_query_use_openai_error_shape(loom_server):
    response = httpx.get(f"{loom_server.url}/v1/nope")
    assert response.status_code == 404 and "error" in response.json()
    response = httpx.get(f"{loom_server.url}/v1/chat/completions", params={"limit": 0})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "limit"


def test_upstream_down_is_502_and_names_provider(tmp_path):
    env = {
        "OPENAI_API_KEY": "k",
        "OPENAI_BASE_URL": f"http://127.0.0.1:{free_port()}/v1",
        "LOOM_DB_URL": f"sqlite+aiosqlite:///{tmp_path}/db.sqlite",
        "LOOM_LOCAL_MODELS": "off",
    }
    with run_loom(env) as loom:
        client = openai.OpenAI(base_url=f"{loom.url}/v1", api_key="x", max_retries=0)
        for stream in (False, True):
            with pytest.raises(openai.APIStatusError) as info:
                client.chat.completions.create(
                    model="openai/gpt-4o", messages=MESSAGES, stream=stream
                )
            assert info.value.status_code == 502
            assert "provider 'openai'" in info.value.message


def test_upstream_timeout_is_504(tmp_path, upstream_server):
    fake, server = upstream_server
    config = tmp_path / "loom.yaml"
    config.write_text(
        "providers:\n"
        f"  - name: slow\n    base_url: {server.url}/v1\n    timeout: 0.3\n"
        "    models: [gpt-4o]\n"
    )
    env = {
        "LOOM_CONFIG": str(config),
        "LOOM_LOCAL_MODELS": "off",
        "LOOM_DB_URL": f"sqlite+aiosqlite:///{tmp_path}/db.sqlite",
    }
    fake.reset()
    fake.script(Turn(text="too slow", delay=1.0))
    with run_loom(env) as loom:
        response = httpx.post(
            f"{loom.url}/v1/chat/completions",
            timeout=10,
            json={"model": "slow/gpt-4o", "messages": MESSAGES, "stream": True},
        )
        assert response.status_code == 504
        assert "provider 'slow'" in response.json()["error"]["message"]
    fake.reset()
