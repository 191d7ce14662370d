"""Clients that drop their streams mid-way, many at once: every turn still ends, is stored
exactly once, and lands in its conversation whole and in order; no request gets a 5xx.

60 concurrent streams over 10 conversations; every third client closes its connection
after the first text delta. Then (once the server says every turn has ended and been
stored) each response is read back, and each conversation's items are checked: exactly
the turns sent to it, each as its input then its output, none twice, none missing. Run on
SQLite and on PostgreSQL.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import run_loom
from tests.support.pg import pg_database
from tests.support.schemas import validate_event
from tests.support.servers import ThreadedServer
from tests.support.stream_validator import parse_sse, validate_stream
from tests.support.upstream import Turn

MODEL = "openai/gpt-4o"
STREAMS = 60
CONVERSATIONS = 10
ANSWER = " ".join(f"word{i}" for i in range(40))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
def server(request, loom_server, loom_env) -> Iterator[ThreadedServer]:
    if request.param == "sqlite":
        yield loom_server
        return
    with pg_database() as url, run_loom({**loom_env, "LOOM_DB_URL": url}) as pg_server:
        yield pg_server


def events_of(raw: bytes) -> list[dict[str, Any]]:
    """The complete events in `raw` (a dropped stream may end inside one)."""
    whole = raw[: raw.rfind(b"\n\n") + 2] if b"\n\n" in raw else b""
    return [event for _, event in parse_sse(whole)]


async def one_stream(base: str, body: dict[str, Any], drop: bool) -> dict[str, Any]:
    """Stream one turn; with `drop`, close the connection after the first text delta.
    What the client saw: the HTTP status and the events it read."""
    raw = b""
    async with (
        httpx.AsyncClient(base_url=base, timeout=60) as http,
        http.stream("POST", "/v1/responses", json=body) as response,
    ):
        if response.status_code != 200:
            return {"status": response.status_code, "body": await response.aread()}
        async for block in response.aiter_raw():
            raw += block
            if drop and b"response.output_text.delta" in raw and raw.endswith(b"\n\n"):
                break  # leaving the block closes the connection mid-stream
    return {"status": 200, "events": events_of(raw), "dropped": drop}


def test_dropped_streams_under_load_lose_nothing(server: ThreadedServer, upstream) -> None:
    upstream.default = Turn(text=ANSWER, delay=0.002)
    http = httpx.Client(base_url=server.url, timeout=30)
    conversations = [
        http.post("/v1/conversations", json={}).raise_for_status().json()["id"]
        for _ in range(CONVERSATIONS)
    ]
    bodies = [
        {
            "model": MODEL,
            "input": f"question {n}",
            "conversation": conversations[n % CONVERSATIONS],
            "stream": True,
        }
        for n in range(STREAMS)
    ]

    async def run_all() -> list[dict[str, Any]]:
        return await asyncio.gather(
            *(one_stream(server.url, body, drop=n % 3 == 0) for n, body in enumerate(bodies))
        )

    seen = asyncio.run(run_all())
    assert [s["status"] for s in seen] == [200] * STREAMS, [s for s in seen if s["status"] != 200]
    assert sum(s["dropped"] for s in seen) == STREAMS // 3
    server.wait_for_turns()

    ids: list[str] = []
    for s in seen:
        events = s["events"]
        if s["dropped"]:  # what arrived is a valid beginning of a stream
            assert [e["sequence_number"] for e in events] == list(range(len(events)))
            assert events[0]["type"] == "response.created"
            assert not any(e["type"] == "response.completed" for e in events)
            for event in events:
                validate_event(event)
        else:
            assert validate_stream(events)["status"] == "completed"
        ids.append(events[0]["response"]["id"])
    assert len(set(ids)) == STREAMS

    # Every turn ended and was stored, the dropped ones too, with the whole answer.
    outputs: dict[str, str] = {}
    for response_id in ids:
        stored = http.get(f"/v1/responses/{response_id}").raise_for_status().json()
        assert stored["status"] == "completed", stored
        [message] = stored["output"]
        assert message["content"][0]["text"] == ANSWER
        outputs[response_id] = message["id"]

    # Each conversation holds exactly its turns, each as question then answer, once.
    for index, conv_id in enumerate(conversations):
        page = http.get(f"/v1/conversations/{conv_id}/items", params={"limit": 100, "order": "asc"})
        items = page.raise_for_status().json()["data"]
        mine = [n for n in range(STREAMS) if n % CONVERSATIONS == index]
        assert len(items) == 2 * len(mine)
        questions = [items[i]["content"][0]["text"] for i in range(0, len(items), 2)]
        assert sorted(questions) == sorted(f"question {n}" for n in mine)
        for i in range(0, len(items), 2):
            n = int(items[i]["content"][0]["text"].split()[1])
            assert items[i]["role"] == "user"
            assert items[i + 1]["id"] == outputs[ids[n]]
    http.close()
