"""Zero-config Loom: the embedded SmolLM2 model answers through the `openai` SDK."""

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
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(text.strip()) > 0
    finish = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finish and finish[-1] in ("stop", "length")
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_responses_stream_from_embedded_model(local_client):
    with local_client.responses.create(
        model=MODEL, input="Say hello.", stream=True, max_output_tokens=24
    ) as stream:
        events = [e.model_dump(mode="json", exclude_unset=True, by_alias=True) for e in stream]
    final = validate_stream(events)
    assert final["status"] in ("completed", "incomplete")
    assert final["output"][0]["content"][0]["text"].strip()
    assert final["usage"]["output_tokens"] > 0
