"""Zero-config Loom: the embedded SmolLM2 model answers through the `openai` SDK.

The words are the model's choice; the tests check what Loom guarantees around them, and use
a JSON grammar where they need text that is certain to be there."""

from __future__ import annotations

import openai
import pytest

from tests.conftest import run_loom
from tests.support.stream_validator import validate_stream

MODEL = "local/smollm2-135m"


@pytest.fixture(scope="module")
def local_client(tmp_path_factory):
    db = tmp_path_factory.mktemp("local") / "loom.db"
    # No provider configured and no OPENAI_* variables: only the embedded model.
    with run_loom({"LOOM_DB_URL": f"sqlite+aiosqlite:///{db}"}) as loom:
        yield openai.OpenAI(base_url=f"{loom.url}/v1", api_key="x", max_retries=0)


def test_lists_only_the_embedded_model(local_client):
    assert [m.id for m in local_client.models.list()] == [MODEL]


def test_chat_stream_from_embedded_model(local_client):
    stream = local_client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Name a colour."}],
        stream=True,
        max_tokens=24,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    finish = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert len(finish) == 1 and finish[0] in ("stop", "length")
    usage = chunks[-1].usage
    assert usage is not None and usage.prompt_tokens > 0
    if finish[0] == "length":
        assert usage.completion_tokens == 24


def test_chat_stream_in_json_mode_is_certain_to_carry_text(local_client):
    stream = local_client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Name a colour, as JSON."}],
        stream=True,
        max_tokens=24,
        response_format={"type": "json_object"},
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text.startswith("{"), text


def test_responses_stream_from_embedded_model(local_client):
    with local_client.responses.create(
        model=MODEL,
        input="Say hello, as JSON.",
        stream=True,
        max_output_tokens=24,
        text={"format": {"type": "json_object"}},  # so the reply is certain to have text
    ) as stream:
        events = [e.model_dump(mode="json", exclude_unset=True, by_alias=True) for e in stream]
    final = validate_stream(events)
    assert final["status"] in ("completed", "incomplete")
    assert final["output"][0]["content"][0]["text"].startswith("{")
    assert final["usage"]["output_tokens"] > 0
