"""Namespace, custom and unknown tool types, and reasoning items, end to end."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from tests.conftest import run_loom
from tests.e2e.test_responses import MODEL, create, stream_events
from tests.support.upstream import Turn

CRM = {
    "type": "namespace",
    "name": "crm",
    "description": "Customer records.",
    "tools": [
        {
            "type": "function",
            "name": "get_customer",
            "description": "Look a customer up.",
            "parameters": {
                "type": "object",
                "properties": {"id": {"type": "string"}},
                "required": ["id"],
            },
        },
        {"type": "custom", "name": "note", "description": "Write a free-form note."},
    ],
}
SQL = {
    "type": "custom",
    "name": "run_sql",
    "description": "Run one SQL query.",
    "format": {"type": "grammar", "syntax": "regex", "definition": r"SELECT [a-z0-9]+"},
}


def _offered(upstream) -> dict[str, dict]:
    return {t["function"]["name"]: t["function"] for t in upstream.requests[-1]["tools"]}


def test_namespace_function_call_carries_namespace_and_routes_back(client, upstream):
    upstream.script(
        Turn(tool_calls=[("crm__get_customer", {"id": "c7"})]),
        Turn(text="Customer c7 is Ada."),
    )
    first = stream_events(client, model=MODEL, input="Who is c7?", tools=[CRM])
    offered = _offered(upstream)
    assert set(offered) == {"crm__get_customer", "crm__note"}
    assert offered["crm__get_customer"]["parameters"] == CRM["tools"][0]["parameters"]
    assert offered["crm__note"]["parameters"]["properties"]["input"]["type"] == "string"
    (call,) = first["output"]
    assert call["type"] == "function_call"
    assert (call["name"], call["namespace"]) == ("get_customer", "crm")
    assert json.loads(call["arguments"]) == {"id": "c7"}
    assert first["tools"] == [CRM]  # echoed as given

    second = create(
        client,
        model=MODEL,
        previous_response_id=first["id"],
        tools=[CRM],
        input=[{"type": "function_call_output", "call_id": call["call_id"], "output": "Ada"}],
    )
    assert second["output"][0]["content"][0]["text"] == "Customer c7 is Ada."
    messages = upstream.requests[-1]["messages"]
    assert messages[1]["tool_calls"][0]["function"]["name"] == "crm__get_customer"
    assert messages[2] == {"role": "tool", "tool_call_id": call["call_id"], "content": "Ada"}


def test_custom_tool_call_streams_input_and_accepts_output(client, upstream):
    upstream.script(
        Turn(tool_calls=[("run_sql", {"input": "SELECT answer"})]),
        Turn(text="The answer is 42."),
    )
    first = stream_events(client, model=MODEL, input="Ask the db.", tools=[SQL])
    offered = _offered(upstream)["run_sql"]
    # The regex grammar reaches the backend as the input's JSON Schema pattern.
    assert offered["parameters"]["properties"]["input"]["pattern"] == r"^SELECT [a-z0-9]+$"
    (call,) = first["output"]
    assert call["type"] == "custom_tool_call"
    assert (call["name"], call["input"]) == ("run_sql", "SELECT answer")
    assert call["id"].startswith("ctc_") and call["call_id"]
    assert first["tools"] == [SQL]

    second = stream_events(
        client,
        model=MODEL,
        previous_response_id=first["id"],
        tools=[SQL],
        input=[{"type": "custom_tool_call_output", "call_id": call["call_id"], "output": "42"}],
    )
    assert second["output"][0]["content"][0]["text"] == "The answer is 42."
    messages = upstream.requests[-1]["messages"]
    function = messages[1]["tool_calls"][0]["function"]
    assert function["name"] == "run_sql"
    assert json.loads(function["arguments"]) == {"input": "SELECT answer"}
    assert messages[2] == {"role": "tool", "tool_call_id": call["call_id"], "content": "42"}


def test_lark_grammar_reaches_the_backend_as_a_pattern_when_regular(client, upstream):
    regular = {
        **SQL,
        "format": {"type": "grammar", "syntax": "lark", "definition": 'start: "GET " /[a-z]+/'},
    }
    recursive = {
        **SQL,
        "name": "calc",
        "format": {
            "type": "grammar",
            "syntax": "lark",
            "definition": 'start: expr\nexpr: "(" expr ")" | "1"',
        },
    }
    upstream.script(Turn(text="ok"))
    stream_events(client, model=MODEL, input="x", tools=[regular, recursive])
    offered = _offered(upstream)
    assert offered["run_sql"]["parameters"]["properties"]["input"]["pattern"] == "^GET ([a-z]+)$"
    calc = offered["calc"]
    assert "pattern" not in calc["parameters"]["properties"]["input"]
    assert 'expr: "(" expr ")"' in calc["description"]  # shown, not enforced


def test_custom_tool_choice_forces_the_call(client, upstream):
    upstream.script(Turn(tool_calls=[("run_sql", {"input": "SELECT x"})]))
    response = create(
        client,
        model=MODEL,
        input="go",
        tools=[SQL],
        tool_choice={"type": "custom", "name": "run_sql"},
    )
    assert upstream.requests[-1]["tool_choice"] == {
        "type": "function",
        "function": {"name": "run_sql"},
    }
    assert response["output"][0]["input"] == "SELECT x"


def test_bad_custom_grammar_is_400(loom_server, upstream):
    bad = {**SQL, "format": {"type": "grammar", "syntax": "regex", "definition": "("}}
    response = httpx.post(
        f"{loom_server.url}/v1/responses", json={"model": MODEL, "input": "x", "tools": [bad]}
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "tools[0].format.definition"


def test_tool_types_loom_does_not_run_are_echoed(client, upstream):
    upstream.script(Turn(text="Fine."))
    tools = [{"type": "web_search"}, {"type": "local_shell"}, SQL]
    response = stream_events(client, model=MODEL, input="hi", tools=tools)
    assert [t["type"] for t in response["tools"]] == ["web_search", "local_shell", "custom"]
    assert list(_offered(upstream)) == ["run_sql"]  # nothing offered for the nameless ones


def test_model_calling_an_unknown_tool_fails_clearly(loom_server, upstream):
    upstream.script(Turn(tool_calls=[("teleport", {"to": "Mars"})]))
    tool = {"type": "future_tool", "name": "teleport", "parameters": {"type": "object"}}
    body = {"model": MODEL, "input": "go", "tools": [tool]}
    response = httpx.post(f"{loom_server.url}/v1/responses", json=body, timeout=30)
    assert response.status_code == 200
    data = response.json()
    assert data["tools"] == [tool]
    assert data["status"] == "failed"
    assert "'teleport'" in data["error"]["message"]
    assert "'future_tool'" in data["error"]["message"]


def test_reasoning_items_pass_through_with_encrypted_content(client, upstream):
    upstream.script(Turn(reasoning="think first", text="Done."))
    first = stream_events(client, model=MODEL, input="x", include=["reasoning.encrypted_content"])
    reasoning = first["output"][0]
    assert reasoning["type"] == "reasoning"
    upstream.script(Turn(text="Again."))
    echoed = {**reasoning, "encrypted_content": "opaque-blob"}
    second = create(client, model=MODEL, input=[echoed, {"role": "user", "content": "more"}])
    assert second["status"] == "completed"
    items = client.responses.input_items.list(second["id"], order="asc").data
    assert items[0].type == "reasoning" and items[0].encrypted_content == "opaque-blob"


def test_upstream_reasoning_details_become_summary_text_and_encrypted_content(client, upstream):
    upstream.script(
        Turn(
            reasoning_details=[
                {"type": "reasoning.summary", "summary": "Plan: "},
                {"type": "reasoning.summary", "summary": "add them."},
                {"type": "reasoning.text", "text": "2 + 2 is 4."},
                {"type": "reasoning.encrypted", "data": "gAAAA-opaque"},
            ],
            text="4",
        )
    )
    final = stream_events(client, model=MODEL, input="2+2?", reasoning={"summary": "auto"})
    reasoning, message = final["output"]
    assert reasoning["summary"] == [{"type": "summary_text", "text": "Plan: add them."}]
    assert reasoning["content"] == [{"type": "reasoning_text", "text": "2 + 2 is 4."}]
    assert reasoning["encrypted_content"] == "gAAAA-opaque"
    assert message["content"][0]["text"] == "4"
    # Chained, the encrypted reasoning goes back to the upstream with the assistant turn.
    upstream.script(Turn(text="8"))
    client.responses.create(model=MODEL, previous_response_id=final["id"], input="4+4?")
    assistant = upstream.requests[-1]["messages"][1]
    assert assistant["content"] == "4"
    assert assistant["reasoning_details"] == [
        {"type": "reasoning.encrypted", "data": "gAAAA-opaque"}
    ]


def test_reasoning_text_after_a_summary_starts_a_new_item(client, upstream):
    upstream.script(
        Turn(
            reasoning_details=[
                {"type": "reasoning.text", "text": "first thought"},
                {"type": "reasoning.summary", "summary": "summed up"},
                {"type": "reasoning.text", "text": "second thought"},
            ],
            text="ok",
        )
    )
    final = stream_events(client, model=MODEL, input="think")
    first, second, _ = final["output"]
    assert first["content"][0]["text"] == "first thought"
    assert first["summary"][0]["text"] == "summed up"
    assert second["content"][0]["text"] == "second thought"


@pytest.fixture(scope="module")
def native_loom(loom_env, tmp_path_factory):
    """Loom with a provider configured `custom_tools: native`, as for OpenAI's chat API."""
    directory = tmp_path_factory.mktemp("native")
    config = directory / "loom.yaml"
    base_url = loom_env["OPENAI_BASE_URL"]
    config.write_text(
        f"providers:\n  - name: native\n    base_url: {base_url}\n    custom_tools: native\n"
    )
    env = {
        "LOOM_CONFIG": str(config),
        "LOOM_DB_URL": f"sqlite+aiosqlite:///{directory / 'loom.db'}",
        "LOOM_LOCAL_MODELS": "off",
        "LOOM_DATA_DIR": str(directory),
    }
    with run_loom(env) as server:
        yield openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0)


def test_native_custom_tools_pass_the_grammar_and_stream_raw_input(native_loom, upstream):
    model = "native/gpt-4o"
    upstream.script(Turn(custom_calls=[("run_sql", "SELECT answer")]), Turn(text="42."))
    first = stream_events(
        native_loom,
        model=model,
        input="Ask the db.",
        tools=[SQL],
        tool_choice={"type": "custom", "name": "run_sql"},
    )
    sent = upstream.requests[-1]
    assert sent["tools"] == [
        {
            "type": "custom",
            "custom": {
                "name": "run_sql",
                "description": "Run one SQL query.",
                "format": {
                    "type": "grammar",
                    "grammar": {"syntax": "regex", "definition": "SELECT [a-z0-9]+"},
                },
            },
        }
    ]
    assert sent["tool_choice"] == {"type": "custom", "custom": {"name": "run_sql"}}
    (call,) = first["output"]
    assert (call["type"], call["input"]) == ("custom_tool_call", "SELECT answer")
    second = stream_events(
        native_loom,
        model=model,
        previous_response_id=first["id"],
        tools=[SQL],
        input=[{"type": "custom_tool_call_output", "call_id": call["call_id"], "output": "42"}],
    )
    assert second["output"][0]["content"][0]["text"] == "42."
    history = upstream.requests[-1]["messages"]
    assert history[1]["tool_calls"] == [
        {
            "id": call["call_id"],
            "type": "custom",
            "custom": {"name": "run_sql", "input": "SELECT answer"},
        }
    ]
    assert history[2] == {"role": "tool", "tool_call_id": call["call_id"], "content": "42"}
