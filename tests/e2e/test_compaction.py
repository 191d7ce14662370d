"""Compaction end to end: `POST /v1/responses/compact`, passing its item back, automatic
compaction on create (`context_management`, `compaction_trigger`), and the sealing."""

from __future__ import annotations

import base64

import httpx
import openai
import pytest
from openai.types.responses.compacted_response import CompactedResponse
from openai.types.responses.response_input_message_item import ResponseInputMessageItem

from tests.conftest import run_loom
from tests.e2e.test_responses import MODEL, create, stream_events
from tests.support.upstream import Turn

SUMMARY = "The user is planning a trip to Oslo in May."
HISTORY = [
    {"role": "user", "content": "I want to visit Oslo."},
    {"role": "assistant", "content": "When do you plan to go?"},
    {"role": "user", "content": "In May."},
]


def compact(loom_server, **body) -> dict:
    response = httpx.post(f"{loom_server.url}/v1/responses/compact", json=body, timeout=30)
    assert response.status_code == 200, response.text
    data = response.json()
    # The SDK's output-item union has no user message, though OpenAI returns them here:
    # check the envelope with CompactedResponse, and each item against its own SDK type.
    *users, item = data["output"]
    CompactedResponse.model_validate({**data, "output": [item]})
    for user in users:
        ResponseInputMessageItem.model_validate(user)
    return data


def test_compact_returns_user_messages_then_a_sealed_item(loom_server, upstream):
    upstream.script(Turn(text=SUMMARY, prompt_tokens=40, completion_tokens=12))
    data = compact(loom_server, model=MODEL, input=HISTORY)
    assert data["object"] == "response.compaction"
    *users, item = data["output"]
    assert [u["content"][0]["text"] for u in users] == ["I want to visit Oslo.", "In May."]
    assert all(u["role"] == "user" for u in users)
    assert item["type"] == "compaction" and item["id"].startswith("cmp_")
    sealed = item["encrypted_content"]
    raw = base64.urlsafe_b64decode(sealed + "=" * (-len(sealed) % 4))
    assert b"Oslo" not in raw and "Oslo" not in sealed  # not a readable summary
    assert data["usage"]["input_tokens"] == 40 and data["usage"]["output_tokens"] == 12
    # The model was asked for a summary of the whole history.
    sent = upstream.requests[-1]["messages"]
    assert [m["content"] for m in sent[:3]] == [h["content"] for h in HISTORY]
    assert "summary" in sent[-1]["content"].lower()


def test_compaction_item_replaces_the_history_it_stands_for(client, loom_server, upstream):
    upstream.script(Turn(text=SUMMARY))
    output = compact(loom_server, model=MODEL, input=HISTORY)["output"]
    upstream.script(Turn(text="Pack a jacket."))
    final = stream_events(
        client, model=MODEL, input=[*output, {"role": "user", "content": "What to pack?"}]
    )
    assert final["status"] == "completed"
    assert upstream.requests[-1]["messages"] == [
        {"role": "user", "content": "I want to visit Oslo."},
        {"role": "user", "content": "In May."},
        {
            "role": "assistant",
            "content": "Summary of the earlier conversation (compacted):\n" + SUMMARY,
        },
        {"role": "user", "content": "What to pack?"},
    ]
    # Chained from that response, the compacted context still stands in for the history.
    upstream.script(Turn(text="Sure."))
    client.responses.create(model=MODEL, previous_response_id=final["id"], input="Thanks")
    sent = [m["content"] for m in upstream.requests[-1]["messages"]]
    assert sent[2].endswith(SUMMARY) and "When do you plan to go?" not in sent


def test_tampered_item_is_400(loom_server, upstream):
    upstream.script(Turn(text=SUMMARY))
    *users, item = compact(loom_server, model=MODEL, input=HISTORY)["output"]
    sealed = item["encrypted_content"]
    flipped = sealed[:-5] + ("A" if sealed[-5] != "A" else "B") + sealed[-4:]
    for bad in (flipped, sealed[:20], "not-base64!", 7):
        body = {"model": MODEL, "input": [*users, {**item, "encrypted_content": bad}]}
        response = httpx.post(f"{loom_server.url}/v1/responses", json=body, timeout=30)
        assert response.status_code == 400, bad
        assert response.json()["error"]["param"] == "input[2].encrypted_content"
    assert len(upstream.requests) == 1  # only the compaction call reached the model


def test_missing_model_is_400_as_openai_answers(loom_server, upstream):
    response = httpx.post(f"{loom_server.url}/v1/responses/compact", json={"input": HISTORY})
    assert response.status_code == 400
    assert response.json()["error"] == {
        "message": "Missing required parameter: 'model'.",
        "type": "invalid_request_error",
        "param": "model",
        "code": "missing_required_parameter",
    }


def test_sdk_compact_from_previous_response(client, upstream):
    upstream.script(Turn(text="When do you plan to go?"), Turn(text=SUMMARY))
    first = client.responses.create(model=MODEL, input="I want to visit Oslo.")
    compacted = client.responses.compact(model=MODEL, previous_response_id=first.id)
    assert compacted.object == "response.compaction"
    assert [o.type for o in compacted.output] == ["message", "compaction"]


def test_context_management_threshold_compacts_automatically(client, upstream):
    long_input = [*HISTORY, {"role": "user", "content": "Tell me more. " * 400}]
    upstream.script(Turn(text=SUMMARY), Turn(text="Here is more."))
    final = stream_events(
        client,
        model=MODEL,
        input=long_input,
        context_management=[{"type": "compaction", "compact_threshold": 1000}],
    )
    item, message = final["output"]
    assert item["type"] == "compaction" and message["type"] == "message"
    summary_call, answer_call = upstream.requests[-2:]
    assert "summary" in summary_call["messages"][-1]["content"].lower()
    assert [m["role"] for m in answer_call["messages"]] == ["user", "user", "user", "assistant"]
    assert answer_call["messages"][-1]["content"].endswith(SUMMARY)


def test_below_threshold_nothing_is_compacted(client, upstream):
    upstream.script(Turn(text="Short."))
    final = stream_events(
        client,
        model=MODEL,
        input=HISTORY,
        context_management=[{"type": "compaction", "compact_threshold": 1000}],
    )
    assert [i["type"] for i in final["output"]] == ["message"]
    assert len(upstream.requests) == 1


def test_compaction_trigger_item(client, upstream):
    upstream.script(Turn(text=SUMMARY), Turn(text="Done."))
    trigger = {"type": "compaction_trigger"}
    response = client.responses.create(model=MODEL, input=[*HISTORY, trigger])
    assert [o.type for o in response.output] == ["compaction", "message"]
    items = client.responses.input_items.list(response.id, order="asc").data
    assert [i.type for i in items] == ["message"] * 3  # the trigger itself is not kept


def test_bad_context_management_is_400(loom_server, upstream):
    body = {"model": MODEL, "input": "x", "context_management": [{"type": "other"}]}
    response = httpx.post(f"{loom_server.url}/v1/responses", json=body)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "context_management[0].type"


def test_key_is_persisted_and_another_key_refuses(loom_env, tmp_path, upstream):
    env = {**loom_env, "LOOM_DATA_DIR": str(tmp_path)}
    upstream.script(Turn(text=SUMMARY))
    with run_loom(env) as first:
        output = compact(first, model=MODEL, input=HISTORY)["output"]
    assert (tmp_path / "compaction.key").stat().st_mode & 0o777 == 0o600
    upstream.script(Turn(text="Still fine."))
    with run_loom(env) as restarted:  # same data dir: same key, the item opens
        client = openai.OpenAI(base_url=f"{restarted.url}/v1", api_key="x", max_retries=0)
        assert client.responses.create(model=MODEL, input=output).status == "completed"
    other = {**env, "LOOM_COMPACTION_KEY": base64.urlsafe_b64encode(b"k" * 32).decode()}
    with run_loom(other) as elsewhere:
        response = httpx.post(
            f"{elsewhere.url}/v1/responses", json={"model": MODEL, "input": output}, timeout=30
        )
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "invalid_encrypted_content"


@pytest.mark.parametrize("key", ["short", "!!!"])
def test_bad_configured_key_is_a_config_error(key):
    from loom.config import ConfigError, load_settings
    from loom.engine.compaction_seal import cipher

    with pytest.raises(ConfigError):
        cipher(load_settings(env={"LOOM_COMPACTION_KEY": key, "LOOM_LOCAL_MODELS": "off"}))


def test_recent_tool_work_is_kept_verbatim_inside_the_item(client, loom_server, upstream):
    """Compacted mid-task, the agent keeps its latest tool call and result exactly."""
    call = {"type": "function_call", "call_id": "call_7", "name": "ls", "arguments": "{}"}
    result = {"type": "function_call_output", "call_id": "call_7", "output": "a.txt b.txt"}
    upstream.script(Turn(text=SUMMARY))
    *users, item = compact(loom_server, model=MODEL, input=[*HISTORY, call, result])["output"]
    assert "a.txt" not in item["encrypted_content"]
    upstream.script(Turn(text="Two files."))
    again = {"role": "user", "content": "How many files?"}
    create(client, model=MODEL, input=[*users, item, again])
    assert upstream.requests[-1]["messages"][2:] == [
        {
            "role": "assistant",
            "content": "Summary of the earlier conversation (compacted):\n" + SUMMARY,
        },
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"id": "call_7", "type": "function", "function": {"name": "ls", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_7", "content": "a.txt b.txt"},
        {"role": "user", "content": "How many files?"},
    ]


def test_input_tokens_counts_the_compacted_context(loom_server, upstream):
    upstream.script(Turn(text=SUMMARY))
    output = compact(loom_server, model=MODEL, input=HISTORY)["output"]
    counted = httpx.post(
        f"{loom_server.url}/v1/responses/input_tokens", json={"model": MODEL, "input": output}
    ).json()["input_tokens"]
    # The two user messages and the summary message, by the documented estimate.
    chars = len("I want to visit Oslo.") + len("In May.")
    chars += len("Summary of the earlier conversation (compacted):\n" + SUMMARY)
    assert counted == -(-chars // 4) + 3 * 3 + 3
