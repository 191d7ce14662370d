"""Background responses across real Loom processes on one PostgreSQL.

Each Loom here is a child process running `loom serve`, so SIGTERM and kill -9 are real.
The upstream answers slowly (a delay before every chunk), so a response is still running
while the test creates, drops, resumes, cancels or kills. Leases are short (1.5 s) so a
dead replica's work is settled within seconds.
"""

from __future__ import annotations

import contextlib
import queue
import signal
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest

from tests.support.lifecycle import read_sse, text_of, wait_for
from tests.support.pg import pg_database
from tests.support.processes import loom_processes
from tests.support.schemas import validate_response
from tests.support.stream_validator import validate_cut_stream, validate_stream
from tests.support.upstream import Turn

pytestmark = pytest.mark.postgresql

MODEL = "openai/gpt-4o"
WORDS = " ".join(f"w{i}" for i in range(16))
LEASE = 1.5


def sdk(process) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{process.url}/v1", api_key="x", max_retries=0)


def ended(client: openai.OpenAI, response_id: str, timeout: float = 30):
    return wait_for(
        lambda: client.responses.retrieve(response_id),
        lambda r: r.status not in ("queued", "in_progress"),
        timeout=timeout,
        what=f"{response_id} to end",
    )


def create_streaming(process, stop_after: int | None = None, on_event=None) -> list[dict]:
    body = {"model": MODEL, "input": "tell", "background": True, "stream": True}
    return read_sse("POST", f"{process.url}/v1/responses", body, stop_after, on_event=on_event)


def resume(process, response_id: str, after: int | None = None) -> list[dict]:
    params = {"stream": "true"} | ({} if after is None else {"starting_after": after})
    return read_sse("GET", f"{process.url}/v1/responses/{response_id}", params=params)


def assert_clean_exit(process) -> None:
    """uvicorn ends a SIGTERM'd server by re-raising the signal once shutdown is complete."""
    assert process.proc.wait(30) in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in process.log()


@pytest.fixture(scope="module")
def pg_env(loom_env):
    with pg_database() as url:
        yield {
            **loom_env,
            "LOOM_DB_URL": url,
            "LOOM_LEASE_SECONDS": str(LEASE),
            "LOOM_SHUTDOWN_GRACE": "10",
        }


@pytest.fixture
def start(tmp_path):
    with loom_processes(tmp_path) as start:
        yield start


@pytest.fixture(scope="module")
def pair(pg_env, tmp_path_factory, upstream_server):
    fake, _ = upstream_server
    with loom_processes(tmp_path_factory.mktemp("pair")) as start:
        replicas = start(pg_env), start(pg_env)
        for replica in replicas:  # first requests open connections and list models
            fake.script(Turn(text="warm"))
            sdk(replica).responses.create(model=MODEL, input="warm up")
        fake.reset()
        yield replicas


def test_background_create_is_immediate_and_polled_on_the_other_replica(pair, upstream):
    a, b = pair
    upstream.script(Turn(text=WORDS, delay=0.2))  # the model takes over 3 s
    began = time.monotonic()
    created = sdk(a).responses.create(model=MODEL, input="tell", background=True)
    took = time.monotonic() - began
    assert took < 1.0, f"background create took {took:.3f} s"  # ~0.05 s on an idle machine
    assert created.status == "queued"
    done = ended(sdk(b), created.id)
    assert done.status == "completed" and done.output_text == WORDS
    validate_response(done.model_dump(mode="json", exclude_unset=True, by_alias=True))


def test_stream_dropped_and_resumed_on_the_other_replica(pair, upstream):
    a, b = pair
    upstream.script(Turn(text=WORDS, delay=0.08))
    head = create_streaming(a, stop_after=6)
    response_id = head[0]["response"]["id"]
    rest = resume(b, response_id, after=head[-1]["sequence_number"])
    whole = head + rest
    final = validate_stream(whole)
    assert text_of(whole) == WORDS and final["output"][0]["content"][0]["text"] == WORDS
    # a full replay, on either replica, is the same uninterrupted stream
    assert resume(b, response_id) == whole
    assert resume(a, response_id) == whole


def test_cancel_from_the_other_replica_ends_the_stream(pair, upstream):
    a, b = pair
    upstream.script(Turn(text=" ".join(["slow"] * 300), delay=0.03))
    arrived: queue.Queue[dict] = queue.Queue()
    with ThreadPoolExecutor(1) as pool:
        live = pool.submit(create_streaming, a, on_event=arrived.put)
        response_id = arrived.get(timeout=20)["response"]["id"]
        while arrived.get(timeout=20)["type"] != "response.output_text.delta":
            pass
        running = wait_for(
            lambda: sdk(b).responses.retrieve(response_id),
            lambda r: len(r.output_text) > 0,
            what="output on the other replica",
        )
        assert running.status == "in_progress"
        cancelled = sdk(b).responses.cancel(response_id)
        assert cancelled.status == "cancelled"
        events = live.result(timeout=20)  # the creating stream ends too
    validate_cut_stream(events, ended="cancelled")
    assert len(text_of(events).split()) < 300  # the model call was stopped
    again = sdk(b).responses.cancel(running.id)
    assert again.model_dump() == cancelled.model_dump()
    assert sdk(a).responses.retrieve(running.id).status == "cancelled"
    assert resume(b, running.id) == events


def test_cancel_of_non_background_is_400(pair, upstream):
    a, b = pair
    upstream.script(Turn(text="hi"))
    response = sdk(a).responses.create(model=MODEL, input="x")
    with pytest.raises(openai.BadRequestError) as info:
        sdk(b).responses.cancel(response.id)
    assert info.value.status_code == 400
    with pytest.raises(openai.NotFoundError):
        sdk(b).responses.cancel("resp_nope")


def test_kill_9_the_survivor_ends_it_failed(pg_env, pair, start, upstream):
    a, b = start(pg_env), pair[1]
    upstream.script(Turn(text=" ".join(["slow"] * 300), delay=0.05))
    head = create_streaming(a, stop_after=8)
    response_id = head[0]["response"]["id"]
    # Kill A once B sees output in the log, so the failed response has some to keep. (A
    # dead replica's work ends failed whatever its log holds: no re-run, so the upstream's
    # one script suffices however the kill falls.)
    wait_for(
        lambda: sdk(b).responses.retrieve(response_id),
        lambda r: len(r.output_text) > 0,
        what="output stored in the log",
    )
    a.kill9()
    began = time.monotonic()
    rest = resume(b, response_id, after=head[-1]["sequence_number"])
    settled_in = time.monotonic() - began
    events = validate_cut_stream(head + rest, ended="failed")
    assert settled_in < LEASE + 10, f"settled after {settled_in:.1f} s"  # ~2 s when idle
    final = sdk(b).responses.retrieve(response_id)
    assert final.status == "failed" and "stopped before it ended" in final.error.message
    assert final.output_text and len(upstream.requests) == 1  # kept, and not run again
    # B gave what the log holds after the head (A went on after the client left), then
    # the failure: one stream, gap-free (checked above).
    # A got its events live; the log holds those A stored before it died, and the failed
    # response keeps that output. A full replay is that prefix, then the same failure.
    replay = validate_cut_stream(resume(b, response_id), ended="failed")
    assert replay[:-1] == events[: len(replay) - 1]
    assert replay[-1]["response"]["error"]["message"] == final.error.message
    assert (
        replay[-1]["response"]["output"]
        == final.model_dump(mode="json", exclude_unset=True)["output"]
    )
    assert text_of(events).startswith(final.output_text)


def test_sigterm_lets_the_turn_finish(pg_env, pair, start, upstream):
    a, b = start(pg_env), pair[1]
    upstream.script(Turn(text=WORDS, delay=0.1))
    created = sdk(a).responses.create(model=MODEL, input="tell", background=True)
    wait_for(
        lambda: sdk(b).responses.retrieve(created.id),
        lambda r: len(r.output_text) > 0,
        what="output",
    )
    a.sigterm()
    wait_for(a.accepts_connections, lambda up: not up, timeout=10, what="a to stop accepting")
    done = ended(sdk(b), created.id)
    assert done.status == "completed" and done.output_text == WORDS
    assert_clean_exit(a)


def test_sigterm_gives_unstarted_work_back_to_the_queue(pg_env, pair, start, upstream):
    a = start({**pg_env, "LOOM_SHUTDOWN_GRACE": "0.3"})
    b = pair[1]
    # A's model call has not sent a chunk when A stops; B runs the response again.
    upstream.script(Turn(text="never", delay=30), Turn(text=WORDS))
    created = sdk(a).responses.create(model=MODEL, input="tell", background=True)
    wait_for(lambda: len(upstream.requests), lambda n: n >= 1, what="A's model call")
    a.sigterm()
    done = ended(sdk(b), created.id)
    assert done.status == "completed" and done.output_text == WORDS
    events = resume(b, created.id)
    validate_stream(events)
    assert_clean_exit(a)


def _read_until_cut(process, body: dict, on_event) -> list[dict]:
    """A stream read to its end, or to where the server cut it."""
    try:
        return read_sse("POST", f"{process.url}/v1/responses", body, on_event=on_event)
    except httpx.HTTPError:
        return []


def test_sigterm_ends_non_background_turns_failed_after_the_grace(pg_env, pair, start, upstream):
    a, b = start({**pg_env, "LOOM_SHUTDOWN_GRACE": "0.5"}), pair[1]
    slow = " ".join(["slow"] * 300)  # 15 s: still running when the grace ends
    upstream.script(Turn(text=slow, delay=0.05), Turn(text=slow, delay=0.05))
    tag = uuid.uuid4().hex
    arrived: queue.Queue[dict] = queue.Queue()
    body = {"model": MODEL, "input": "tell", "metadata": {"case": tag}}
    with ThreadPoolExecutor(2) as pool:
        streamed = pool.submit(_read_until_cut, a, {**body, "stream": True}, arrived.put)
        plain = pool.submit(lambda: httpx.post(f"{a.url}/v1/responses", json=body, timeout=60))
        streamed_id = arrived.get(timeout=20)["response"]["id"]
        while arrived.get(timeout=20)["type"] != "response.output_text.delta":
            pass
        wait_for(lambda: len(upstream.requests), lambda n: n >= 2, what="both model calls")
        a.sigterm()
        streamed.result(timeout=30)
        with contextlib.suppress(httpx.HTTPError):
            plain.result(timeout=30)
    assert_clean_exit(a)
    listed = httpx.get(f"{b.url}/v1/responses", params={"limit": 20}, timeout=10).json()
    mine = [r for r in listed["data"] if r["metadata"].get("case") == tag]
    assert len(mine) == 2 and streamed_id in {r["id"] for r in mine}
    for response in mine:  # both were stored, ended failed, saying why
        assert response["status"] == "failed", response
        assert "shut down before it ended" in response["error"]["message"]
        validate_response(response)


def test_workers_start_on_postgresql(pg_env, start, upstream):
    upstream.script(Turn(text="one"), Turn(text="two"))
    served = start(pg_env, "--workers", "2")
    client = sdk(served)
    first = client.responses.create(model=MODEL, input="x")
    assert client.responses.retrieve(first.id).output_text == first.output_text


def test_workers_are_refused_on_sqlite(loom_env, start):
    process = start(loom_env, "--workers", "2", ready=False)
    assert process.proc.wait(60) == 2
    assert "--workers needs a PostgreSQL database" in process.log()


def test_sqlite_restart_settles_what_was_running(loom_env, start, upstream, tmp_path):
    env = {**loom_env, "LOOM_DB_URL": f"sqlite+aiosqlite:///{tmp_path / 'restart.db'}"}
    first = start(env)
    upstream.script(Turn(text=" ".join(["slow"] * 300), delay=0.05))
    head = create_streaming(first, stop_after=8)
    response_id = head[0]["response"]["id"]
    first.kill9()
    second = start(env)
    # Settled at start-up: ended failed, whatever reached the log before the kill.
    final = wait_for(
        lambda: sdk(second).responses.retrieve(response_id),
        lambda r: r.status not in ("queued", "in_progress"),
        what="the restart to settle the response",
    )
    assert final.status == "failed"
    validate_cut_stream(resume(second, response_id), ended="failed")
    got = httpx.get(f"{second.url}/v1/responses/{response_id}", timeout=10)
    assert got.json()["status"] == "failed"
