"""The embedded model and custom tools: a regex grammar is enforced by construction.

The custom tool reaches llama.cpp as a function whose one string parameter carries the
regex as its JSON Schema `pattern`, which the schema converter turns into GBNF. So whatever
the 135M model would like to write, the call's input matches the regex; that, and not the
words it picks, is what these tests assert.
"""

from __future__ import annotations

import re

import openai
import pytest

from tests.conftest import run_loom
from tests.support.stream_validator import validate_stream

MODEL = "local/smollm2-135m"
TICKET = r"[A-Z]{3}-[0-9]{2,4}"
FILE_TICKET = {
    "type": "custom",
    "name": "file_ticket",
    "description": "File a ticket by its id.",
    "format": {"type": "grammar", "syntax": "regex", "definition": TICKET},
}


@pytest.fixture(scope="module")
def local_client(tmp_path_factory):
    db = tmp_path_factory.mktemp("local-custom") / "loom.db"
    with run_loom({"LOOM_DB_URL": f"sqlite+aiosqlite:///{db}"}) as loom:
        yield openai.OpenAI(base_url=f"{loom.url}/v1", api_key="x", max_retries=0)


def test_regex_grammar_is_enforced_on_the_embedded_model(local_client):
    with local_client.responses.create(
        model=MODEL,
        input="File the ticket for the login bug.",
        tools=[FILE_TICKET],
        tool_choice={"type": "custom", "name": "file_ticket"},
        max_output_tokens=64,
        stream=True,
    ) as stream:
        events = [e.model_dump(mode="json", exclude_unset=True, by_alias=True) for e in stream]
    final = validate_stream(events)
    [call] = [item for item in final["output"] if item["type"] == "custom_tool_call"]
    assert call["name"] == "file_ticket"
    assert re.fullmatch(TICKET, call["input"]), call["input"]
    kinds = [e["type"] for e in events]
    assert "response.custom_tool_call_input.done" in kinds


def test_regular_lark_grammar_is_enforced_on_the_embedded_model(local_client):
    grammar = (
        'start: "SELECT " COLUMN " FROM " TABLE\nCOLUMN: /[a-z]{1,8}/\nTABLE: "users" | "orders"'
    )
    tool = {
        "type": "custom",
        "name": "run_sql",
        "description": "Run one SQL query.",
        "format": {"type": "grammar", "syntax": "lark", "definition": grammar},
    }
    response = local_client.responses.create(
        model=MODEL,
        input="How many users are there?",
        tools=[tool],
        tool_choice={"type": "custom", "name": "run_sql"},
        max_output_tokens=64,
    )
    [call] = [item for item in response.output if item.type == "custom_tool_call"]
    assert re.fullmatch(r"SELECT [a-z]{1,8} FROM (users|orders)", call.input), call.input
