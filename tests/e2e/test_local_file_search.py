"""Zero-config Loom: the embedded chat model searches a vector store embedded by the
embedded embedding model, forced by `tool_choice`. Nothing here depends on what the small
model writes beyond what its grammar guarantees: a `knowledge_search` call whose arguments
are a JSON object with a non-empty `query` string."""

from __future__ import annotations

import openai
import pytest

from tests.conftest import run_loom
from tests.support.stream_validator import validate_stream

MODEL = "local/smollm2-135m"
TEXT = "The Llama 4 Maverick model has 128 experts in its mixture of experts architecture."


@pytest.fixture(scope="module")
def local_library(tmp_path_factory):
    db = tmp_path_factory.mktemp("local-search") / "loom.db"
    with run_loom({"LOOM_DB_URL": f"sqlite+aiosqlite:///{db}"}) as loom:
        client = openai.OpenAI(base_url=f"{loom.url}/v1", api_key="x", max_retries=0)
        store = client.vector_stores.create(name="local")  # the default, embedded embedder
        uploaded = client.files.create(file=("maverick.txt", TEXT.encode()), purpose="assistants")
        attached = client.vector_stores.files.create_and_poll(
            vector_store_id=store.id, file_id=uploaded.id
        )
        assert attached.status == "completed", attached.last_error
        yield client, store.id, uploaded.id


def test_forced_search_on_the_embedded_model(local_library):
    client, store_id, file_id = local_library
    with client.responses.create(
        model=MODEL,
        input="How many experts does Llama 4 Maverick have?",
        tools=[{"type": "file_search", "vector_store_ids": [store_id]}],
        tool_choice={"type": "file_search"},
        max_tool_calls=1,  # then the model must answer in text
        include=["file_search_call.results"],
        # room for the longest call the grammar allows (a query is at most 500 characters)
        max_output_tokens=600,
        stream=True,
    ) as stream:
        events = [e.model_dump(mode="json", exclude_unset=True, by_alias=True) for e in stream]
    final = validate_stream(events)
    assert final["status"] in ("completed", "incomplete")  # incomplete: the token limit
    call = final["output"][0]
    assert call["type"] == "file_search_call" and call["status"] == "completed"
    [query] = call["queries"]
    assert query.strip()
    # one document in the store: whatever the query, it is the hit
    assert [r["file_id"] for r in call["results"]] == [file_id]
    assert call["results"][0]["text"] == TEXT
    assert [item["type"] for item in final["output"][1:]] == ["message"]
