"""Background responses, resumable streams and cancel on one Loom process (SQLite).

The same API as on several replicas (tests/e2e/test_replicas.py), in the default setup.
"""

from __future__ import annotations

import time

import httpx
import openai
import pytest

from tests.support.lifecycle import read_sse, text_of, wait_for
from tests.support.schemas import validate_response
from tests.support.stream_validator import validate_cut_stream, validate_stream
from tests.support.upstream import Turn

MODEL = "openai/gpt-4o"
WORDS = " ".join(f"w{i}" for i in range(12))


def test_background_create_returns_at_once_and_completes(client, upstream):
    upstream.script(Turn(text="warm"), Turn(text=WORDS, delay=0.1))
    client.responses.create(model=MODEL, input="warm up")  # connections, model list
    started = time.monotonic()
    created = client.responses.create(model=MODEL, input="long", background=True)
    assert time.monotonic() - started < 0.5  # the model takes over 1.2 s
    assert created.status == "queued" and created.background is True
    validate_response(created.model_dump(mode="json", exclude_unset=True, by_alias=True))
    done = wait_for(
        lambda: client.responses.retrieve(created.id),
        lambda r: r.status not in ("queued", "in_progress"),
        what="the background response to end",
    )
    assert done.status == "completed" and done.output_text == WORDS
    validate_response(done.model_dump(mode="json", exclude_unset=True, by_alias=True))


def test_retrieve_shows_output_so_far(client, upstream, loom_server):
    upstream.script(Turn(text=WORDS, delay=0.1))
    url = f"{loom_server.url}/v1/responses"
    head = read_sse(
        "POST", url, {"model": MODEL, "input": "x", "background": True, "stream": True}, 6
    )
    response_id = head[0]["response"]["id"]
    partial = wait_for(
        lambda: client.responses.retrieve(response_id),
        lambda r: r.status != "in_progress" or len(r.output_text) > 0,
        what="output so far",
    )
    assert partial.status == "in_progress"
    assert WORDS.startswith(partial.output_text)
    validate_response(partial.model_dump(mode="json", exclude_unset=True, by_alias=True))


def test_stream_full_replay_and_resume_match(client, upstream, loom_server):
    upstream.script(Turn(text=WORDS, delay=0.02))
    url = f"{loom_server.url}/v1/responses"
    live = read_sse("POST", url, {"model": MODEL, "input": "x", "background": True, "stream": True})
    final = validate_stream(live)
    assert final["status"] == "completed" and final["background"] is True
    assert [e["type"] for e in live[:3]] == [
        "response.created",
        "response.queued",
        "response.in_progress",
    ]
    response_id = final["id"]
    replay = read_sse("GET", f"{url}/{response_id}", params={"stream": "true"})
    assert replay == live
    resumed = read_sse(
        "GET", f"{url}/{response_id}", params={"stream": "true", "starting_after": 4}
    )
    assert live[:5] + resumed == live
    assert text_of(live) == WORDS


def test_dropped_stream_resumes_live(upstream, loom_server):
    upstream.script(Turn(text=WORDS, delay=0.08))
    url = f"{loom_server.url}/v1/responses"
    head = read_sse(
        "POST", url, {"model": MODEL, "input": "x", "background": True, "stream": True}, 5
    )
    rest = read_sse(
        "GET",
        f"{url}/{head[0]['response']['id']}",
        params={"stream": "true", "starting_after": head[-1]["sequence_number"]},
    )
    validate_stream(head + rest)
    assert text_of(head + rest) == WORDS


def test_cancel_stops_the_turn_and_keeps_the_conversation(client, upstream, loom_server):
    upstream.script(Turn(text=" ".join(["slow"] * 200), delay=0.05))
    conversation = client.conversations.create()
    url = f"{loom_server.url}/v1/responses"
    body = {
        "model": MODEL,
        "input": "x",
        "background": True,
        "stream": True,
        "conversation": conversation.id,
    }
    head = read_sse("POST", url, body, 6)
    response_id = head[0]["response"]["id"]
    cancelled = client.responses.cancel(response_id)
    assert cancelled.status == "cancelled"
    again = client.responses.cancel(response_id)
    assert again.model_dump() == cancelled.model_dump()
    assert client.responses.retrieve(response_id).status == "cancelled"
    stream = read_sse("GET", f"{url}/{response_id}", params={"stream": "true"})
    validate_cut_stream(stream, ended="cancelled")
    assert stream[: len(head)] == head
    assert len(text_of(stream).split()) < 200  # the model call was stopped
    assert client.conversations.items.list(conversation.id).data == []


def test_cancel_and_stream_refuse_non_background(client, upstream, loom_server):
    upstream.script(Turn(text="hi"))
    response = client.responses.create(model=MODEL, input="x")
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.cancel(response.id)
    assert info.value.body["type"] == "invalid_request_error"
    with pytest.raises(openai.NotFoundError):
        client.responses.cancel("resp_unknown")
    got = httpx.get(
        f"{loom_server.url}/v1/responses/{response.id}", params={"stream": "true"}, timeout=10
    )
    assert got.status_code == 400 and got.json()["error"]["param"] == "stream"
    bad = httpx.get(
        f"{loom_server.url}/v1/responses/{response.id}",
        params={"stream": "true", "starting_after": -3},
        timeout=10,
    )
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "starting_after"


def test_background_failure_ends_failed(client, upstream):
    upstream.script(Turn(status=500))
    created = client.responses.create(model=MODEL, input="x", background=True)
    done = wait_for(
        lambda: client.responses.retrieve(created.id),
        lambda r: r.status not in ("queued", "in_progress"),
        what="the background response to end",
    )
    assert done.status == "failed" and done.error is not None
    validate_response(done.model_dump(mode="json", exclude_unset=True, by_alias=True))


def test_a_response_deleted_while_it_runs_stays_deleted(client, upstream, loom_server):
    upstream.script(Turn(text=WORDS, delay=0.05))
    seen: list[str] = []

    def delete_once_it_writes(event):
        if event["type"] == "response.created":
            seen.append(event["response"]["id"])
        elif event["type"] == "response.output_text.delta" and len(seen) == 1:
            client.responses.delete(seen[0])
            seen.append("deleted")

    body = {"model": MODEL, "input": "x", "background": True, "stream": True}
    events = read_sse(
        "POST", f"{loom_server.url}/v1/responses", body, on_event=delete_once_it_writes
    )
    validate_stream(events)  # the turn ran to its end
    assert seen[1:] == ["deleted"]
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(seen[0])


def test_a_running_response_shows_in_progress_in_retrieve_and_list(client, upstream, loom_server):
    upstream.script(Turn(text=WORDS, delay=0.2))  # the model takes over 2 s
    created = client.responses.create(model=MODEL, input="x", background=True)
    assert created.status == "queued"  # as the create returns it
    wait_for(lambda: len(upstream.requests), lambda n: n >= 1, what="the model call")
    assert client.responses.retrieve(created.id).status == "in_progress"

    def listed(**params) -> dict[str, str]:
        got = httpx.get(f"{loom_server.url}/v1/responses", params={"limit": 100, **params})
        assert got.status_code == 200
        return {r["id"]: r["status"] for r in got.json()["data"]}

    assert listed()[created.id] == "in_progress"
    assert created.id in listed(status="in_progress")
    assert created.id not in listed(status="queued")
    assert client.responses.cancel(created.id).status == "cancelled"
