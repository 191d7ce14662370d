"""Two Loom processes on one PostgreSQL: either serves any request, nothing lives in memory."""

from __future__ import annotations

import openai
import pytest

from tests.conftest import run_loom
from tests.support.pg import pg_database
from tests.support.upstream import Turn

MODEL = "openai/gpt-4o"


@pytest.fixture(scope="module")
def two_looms(loom_env):
    with pg_database() as url:
        env = {**loom_env, "LOOM_DB_URL": url}
        with run_loom(env) as first, run_loom(env) as second:
            yield [
                openai.OpenAI(base_url=f"{s.url}/v1", api_key="x", max_retries=0)
                for s in (first, second)
            ]


def test_chain_and_conversation_across_processes(two_looms, upstream):
    a, b = two_looms
    upstream.script(Turn(text="one"), Turn(text="two"), Turn(text="three"), Turn(text="four"))
    first = a.responses.create(model=MODEL, input="q1")
    assert b.responses.retrieve(first.id).output_text == "one"
    second = b.responses.create(model=MODEL, input="q2", previous_response_id=first.id)
    assert second.output_text == "two"
    assert upstream.requests[-1]["messages"][:2] == [
        {"role": "user", "content": "q1"},
        {"role": "assistant", "content": "one"},
    ]

    conv = a.conversations.create()
    b.responses.create(model=MODEL, input="c1", conversation=conv.id)
    a.responses.create(model=MODEL, input="c2", conversation=conv.id)
    texts = [i.content[0].text for i in b.conversations.items.list(conv.id, order="asc").data]
    assert texts == ["c1", "three", "c2", "four"]
    b.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        a.responses.retrieve(first.id)
