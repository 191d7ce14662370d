"""Two keys, two owners, and a walk over every route the app registers: bob never sees,
changes or learns of alice's objects. Each of bob's answers about one of alice's ids must
be exactly the answer for an id that never existed, so nothing leaks, not even existence.

The routes are enumerated from the app itself. A route added later fails this test by name
until it is given a probe below (or declared public, server-wide or admin-only), so new
resources (files, vector stores, background jobs, ...) are walked as well.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest
from fastapi.routing import APIWebSocketRoute
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from loom.app import build_app
from loom.config import load_settings
from tests.conftest import run_loom
from tests.support.keys import ALICE_KEY, BOB_KEY, authed_env, http
from tests.support.lifecycle import wait_for
from tests.support.pg import pg_database
from tests.support.upstream import Turn

pytest_plugins = ["tests.support.mcp_server"]  # the MCP server fixtures

MODEL = "openai/gpt-4o"
BOILING = ("get_boiling_point", {"liquid_name": "myawesomeliquid", "celsius": True})

# Served to anyone, with or without a key: they hold no one's data.
PUBLIC = {
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/docs/oauth2-redirect"),
    ("GET", "/redoc"),
    ("GET", "/v1/health"),
    ("GET", "/metrics"),  # counts per route, status, model, MCP server label: no objects
}
# The console's static pages and assets (the console reads /v1 with the user's own key):
# each route and the path fetched to check that it is served to anyone.
CONSOLE = {
    ("GET", "/console"): "/console",
    ("GET", "/console/responses"): "/console/responses",
    ("GET", "/console/responses/{response_id}"): "/console/responses/resp_x",
    ("GET", "/console/conversations"): "/console/conversations",
    ("GET", "/console/conversations/{conversation_id}"): "/console/conversations/conv_x",
    ("GET", "/console/playground"): "/console/playground",
    ("GET", "/console/files"): "/console/files",
    ("GET", "/console/live"): "/console/live",
    ("Mount", "/console/static"): "/console/static/console.css",
}
# Need a key, but show only the server's configuration, the same to every owner.
SERVER_WIDE = {
    ("GET", "/v1/models"),
    ("GET", "/v1/models/{model_id:path}"),
    ("POST", "/v1/embeddings"),
}
# The admin key only; an API key gets 401.
ADMIN_ONLY = {
    ("POST", "/v1/organization/api_keys"),
    ("GET", "/v1/organization/api_keys"),
    ("GET", "/v1/organization/api_keys/{key_id}"),
    ("DELETE", "/v1/organization/api_keys/{key_id}"),
}


def registered_routes() -> list[tuple[str, str]]:
    """(method, path) of every route of a freshly built app, HEAD aside."""
    settings = load_settings(env={"LOOM_LOCAL_MODELS": "off", "LOOM_DB_URL": "sqlite:///x.db"})
    out: list[tuple[str, str]] = []
    for route in build_app(settings).routes:
        contexts = (
            route.effective_route_contexts()
            if hasattr(route, "effective_route_contexts")
            else [route]
        )
        for ctx in contexts:
            original = getattr(ctx, "original_route", ctx)
            if isinstance(original, APIWebSocketRoute):
                # FastAPI leaves an included websocket route's effective path empty; every
                # router is mounted under /v1.
                out.append(("WEBSOCKET", ctx.path or f"/v1{original.path}"))
                continue
            methods = getattr(ctx, "methods", None) or {type(ctx).__name__}
            out.extend((m, ctx.path) for m in sorted(methods) if m != "HEAD")
    return out


ROUTES = registered_routes()


@dataclass
class Alices:
    """Objects alice owns, made through the API with her key."""

    response: dict[str, Any]
    input_item_id: str
    conversation_id: str
    conversation_item_id: str
    completion_id: str
    approval_response_id: str
    approval_request_id: str
    mcp_url: str
    file_id: str
    vector_store_id: str
    batch_id: str
    background_id: str
    prompt_id: str


@pytest.fixture(
    scope="module",
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)],
)
def world(request, loom_env, tmp_path_factory) -> Iterator[tuple[Any, httpx.Client, httpx.Client]]:
    workdir = tmp_path_factory.mktemp("isolation")
    sqlite = contextlib.nullcontext(f"sqlite+aiosqlite:///{workdir / 'loom.db'}")
    with pg_database() if request.param == "postgresql" else sqlite as db_url:
        env = authed_env(loom_env, workdir, db_url)
        with (
            run_loom(env) as server,
            http(server, ALICE_KEY) as alice,
            http(server, BOB_KEY) as bob,
        ):
            yield server, alice, bob


@pytest.fixture
def alices(world, upstream, mcp_server) -> Alices:
    _, alice, _ = world
    upstream.default = Turn(text="alice's answer")
    response = ok(alice.post("/v1/responses", json={"model": MODEL, "input": "secret question"}))
    items = ok(alice.get(f"/v1/responses/{response['id']}/input_items"))["data"]
    conversation = ok(
        alice.post(
            "/v1/conversations",
            json={"items": [{"type": "message", "role": "user", "content": "secret"}]},
        )
    )
    conv_items = ok(alice.get(f"/v1/conversations/{conversation['id']}/items"))["data"]
    completion = ok(
        alice.post(
            "/v1/chat/completions",
            json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "store": True},
        )
    )
    upstream.script(Turn(tool_calls=[BOILING]))
    tools = [
        {
            "type": "mcp",
            "server_label": "tools",
            "server_url": mcp_server.http_url,
            "require_approval": "always",
        }
    ]
    asking = ok(alice.post("/v1/responses", json={"model": MODEL, "input": "boil", "tools": tools}))
    request = next(i for i in asking["output"] if i["type"] == "mcp_approval_request")
    uploaded = ok(
        alice.post(
            "/v1/files",
            files={"file": ("secret.txt", b"alice's secret notes")},
            data={"purpose": "assistants"},
        )
    )
    store = ok(alice.post("/v1/vector_stores", json={"name": "alice"}))
    batch = ok(
        alice.post(
            f"/v1/vector_stores/{store['id']}/file_batches", json={"file_ids": [uploaded["id"]]}
        )
    )
    background = ok(
        alice.post("/v1/responses", json={"model": MODEL, "input": "later", "background": True})
    )
    return Alices(
        response=response,
        input_item_id=items[0]["id"],
        conversation_id=conversation["id"],
        conversation_item_id=conv_items[0]["id"],
        completion_id=completion["id"],
        approval_response_id=asking["id"],
        approval_request_id=request["id"],
        mcp_url=mcp_server.http_url,
        file_id=uploaded["id"],
        vector_store_id=store["id"],
        batch_id=batch["id"],
        background_id=background["id"],
        prompt_id=ok(alice.post("/v1/prompts", json={"prompt": "Secret {{x}}"}))["prompt_id"],
    )


def ok(answer: httpx.Response) -> dict[str, Any]:
    assert answer.status_code == 200, answer.text
    return answer.json()


def same_as_missing(
    call: Callable[[str], httpx.Response],
    real_id: str,
    fake_id: str = "missing_0000",
    *,
    error: bool = True,
) -> httpx.Response:
    """Bob's answer for alice's id equals his answer for an id that never existed (an
    error unless `error` is false: a list after an unknown cursor is an empty page)."""
    theirs, missing = call(real_id), call(fake_id)
    assert (400 <= theirs.status_code < 500) == error, theirs.text
    assert theirs.status_code == missing.status_code
    assert theirs.text.replace(real_id, "ID") == missing.text.replace(fake_id, "ID")
    return theirs


def absent(page: dict[str, Any], *ids: str) -> None:
    assert not {row.get("id") for row in page["data"]} & set(ids)


# -- probes: one per route, bob against alice's objects --------------------------------


def p_create_response(a: Alices, alice: httpx.Client, bob: httpx.Client) -> None:
    def post(**body):
        return lambda some_id: bob.post(
            "/v1/responses", json={"model": MODEL, **{k: v(some_id) for k, v in body.items()}}
        )

    theirs = same_as_missing(
        post(input=lambda _: "hi", previous_response_id=lambda i: i), a.response["id"]
    )
    assert theirs.status_code == 404
    assert theirs.json()["error"]["param"] == "previous_response_id"
    theirs = same_as_missing(
        post(input=lambda _: "hi", conversation=lambda i: i), a.conversation_id
    )
    assert theirs.status_code == 404
    ref = same_as_missing(
        post(input=lambda i: [{"type": "item_reference", "id": i}]), a.input_item_id
    )
    assert ref.status_code == 400
    # An approval continuation: through alice's response, or naming her request alone.
    tools = [{"type": "mcp", "server_label": "tools", "server_url": a.mcp_url}]

    def approve(request_id: str) -> list[dict]:
        return [
            {"type": "mcp_approval_response", "approval_request_id": request_id, "approve": True}
        ]

    theirs = same_as_missing(
        post(
            previous_response_id=lambda i: i,
            tools=lambda _: tools,
            input=lambda _: approve(a.approval_request_id),
        ),
        a.approval_response_id,
    )
    assert theirs.status_code == 404
    same_as_missing(post(tools=lambda _: tools, input=approve), a.approval_request_id)
    # A prompt template of alice's.
    theirs = same_as_missing(
        post(input=lambda _: "hi", prompt=lambda i: {"id": i, "variables": {"x": "y"}}),
        a.prompt_id,
    )
    assert theirs.status_code == 404 and theirs.json()["error"]["param"] == "prompt.id"


def p_get_response(a, alice, bob):
    assert (
        same_as_missing(lambda i: bob.get(f"/v1/responses/{i}"), a.response["id"]).status_code
        == 404
    )
    p_get_response_stream(a, alice, bob)


def p_get_response_stream(a, alice, bob):
    """A background response's stream, replayed or resumed, is as missing as the rest."""
    for params in ({"stream": "true"}, {"stream": "true", "starting_after": 0}):
        theirs = same_as_missing(
            lambda i, params=params: bob.get(f"/v1/responses/{i}", params=params),
            a.background_id,
        )
        assert theirs.status_code == 404


def p_cancel_response(a, alice, bob):
    theirs = same_as_missing(lambda i: bob.post(f"/v1/responses/{i}/cancel"), a.background_id)
    assert theirs.status_code == 404
    done = wait_for(
        lambda: ok(alice.get(f"/v1/responses/{a.background_id}")),
        lambda r: r["status"] not in ("queued", "in_progress"),
        what="alice's background response to end on its own",
    )
    assert done["status"] == "completed"


def p_delete_response(a, alice, bob):
    same_as_missing(lambda i: bob.delete(f"/v1/responses/{i}"), a.response["id"])
    ok(alice.get(f"/v1/responses/{a.response['id']}"))


def p_list_responses(a, alice, bob):
    absent(
        ok(bob.get("/v1/responses", params={"limit": 100})),
        a.response["id"],
        a.approval_response_id,
    )
    same_as_missing(
        lambda i: bob.get("/v1/responses", params={"after": i}), a.response["id"], error=False
    )


def p_input_items(a, alice, bob):
    same_as_missing(lambda i: bob.get(f"/v1/responses/{i}/input_items"), a.response["id"])


def p_input_tokens(a, alice, bob):
    for field, real in (
        ("previous_response_id", a.response["id"]),
        ("conversation", a.conversation_id),
    ):
        theirs = same_as_missing(
            lambda i, field=field: bob.post(
                "/v1/responses/input_tokens", json={"model": MODEL, "input": "x", field: i}
            ),
            real,
        )
        assert theirs.status_code == 404


def p_compact(a, alice, bob):
    theirs = same_as_missing(
        lambda i: bob.post(
            "/v1/responses/compact", json={"model": MODEL, "previous_response_id": i}
        ),
        a.response["id"],
    )
    assert theirs.status_code == 404


def p_websocket(a, alice, bob):
    """Over a socket, bob continuing alice's response gets the error of a missing id."""
    url = str(bob.base_url).replace("http://", "ws://").rstrip("/") + "/v1/responses"
    headers = {"Authorization": bob.headers["Authorization"]}
    with connect(url, additional_headers=headers, open_timeout=10) as socket:

        def continue_from(some_id: str) -> str:
            create = {"type": "response.create", "model": MODEL, "input": "x"}
            socket.send(orjson.dumps({**create, "previous_response_id": some_id}).decode())
            return socket.recv(timeout=30)

        theirs, missing = continue_from(a.response["id"]), continue_from("missing_0000")
    assert orjson.loads(theirs)["error"]["code"] == "previous_response_not_found"
    assert theirs.replace(a.response["id"], "ID") == missing.replace("missing_0000", "ID")


def p_create_conversation(a, alice, bob):
    made = ok(bob.post("/v1/conversations", json={}))
    same_as_missing(lambda i: alice.get(f"/v1/conversations/{i}"), made["id"])


def p_list_conversations(a, alice, bob):
    absent(ok(bob.get("/v1/conversations", params={"limit": 100})), a.conversation_id)
    assert a.conversation_id in {
        c["id"] for c in ok(alice.get("/v1/conversations", params={"limit": 100}))["data"]
    }
    same_as_missing(
        lambda i: bob.get("/v1/conversations", params={"after": i}), a.conversation_id, error=False
    )


def p_get_conversation(a, alice, bob):
    same_as_missing(lambda i: bob.get(f"/v1/conversations/{i}"), a.conversation_id)


def p_update_conversation(a, alice, bob):
    same_as_missing(
        lambda i: bob.post(f"/v1/conversations/{i}", json={"metadata": {"x": "bob"}}),
        a.conversation_id,
    )
    assert ok(alice.get(f"/v1/conversations/{a.conversation_id}"))["metadata"] != {"x": "bob"}


def p_delete_conversation(a, alice, bob):
    same_as_missing(lambda i: bob.delete(f"/v1/conversations/{i}"), a.conversation_id)
    ok(alice.get(f"/v1/conversations/{a.conversation_id}"))


def p_add_items(a, alice, bob):
    item = {"type": "message", "role": "user", "content": "from bob"}
    same_as_missing(
        lambda i: bob.post(f"/v1/conversations/{i}/items", json={"items": [item]}),
        a.conversation_id,
    )
    assert len(ok(alice.get(f"/v1/conversations/{a.conversation_id}/items"))["data"]) == 1


def p_list_items(a, alice, bob):
    same_as_missing(lambda i: bob.get(f"/v1/conversations/{i}/items"), a.conversation_id)


def _item_routes(method: str):
    def probe(a, alice, bob):
        same_as_missing(
            lambda i: bob.request(method, f"/v1/conversations/{i}/items/{a.conversation_item_id}"),
            a.conversation_id,
        )
        # Alice's item id inside a conversation of bob's own is no better.
        own = ok(bob.post("/v1/conversations", json={}))["id"]
        same_as_missing(
            lambda i: bob.request(method, f"/v1/conversations/{own}/items/{i}"),
            a.conversation_item_id,
        )
        ok(alice.get(f"/v1/conversations/{a.conversation_id}/items/{a.conversation_item_id}"))

    return probe


def p_create_completion(a, alice, bob):
    made = ok(
        bob.post(
            "/v1/chat/completions",
            json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}]},
        )
    )
    absent(ok(alice.get("/v1/chat/completions", params={"limit": 100})), made["id"])


def p_list_completions(a, alice, bob):
    absent(ok(bob.get("/v1/chat/completions", params={"limit": 100})), a.completion_id)
    same_as_missing(
        lambda i: bob.get("/v1/chat/completions", params={"after": i}), a.completion_id, error=False
    )


def p_get_completion(a, alice, bob):
    same_as_missing(lambda i: bob.get(f"/v1/chat/completions/{i}"), a.completion_id)


def p_completion_messages(a, alice, bob):
    same_as_missing(lambda i: bob.get(f"/v1/chat/completions/{i}/messages"), a.completion_id)


def p_delete_completion(a, alice, bob):
    same_as_missing(lambda i: bob.delete(f"/v1/chat/completions/{i}"), a.completion_id)
    ok(alice.get(f"/v1/chat/completions/{a.completion_id}"))


def _alices_prompt_unchanged(a: Alices, alice: httpx.Client) -> None:
    kept = ok(alice.get(f"/v1/prompts/{a.prompt_id}"))
    assert (kept["version"], kept["prompt"]) == (1, "Secret {{x}}")


def p_create_prompt(a, alice, bob):
    made = ok(bob.post("/v1/prompts", json={"prompt": "bob's"}))
    same_as_missing(lambda i: alice.get(f"/v1/prompts/{i}"), made["prompt_id"])


def p_list_prompts(a, alice, bob):
    listed = ok(bob.get("/v1/prompts"))["data"]
    assert a.prompt_id not in [p["prompt_id"] for p in listed]


def p_get_prompt(a, alice, bob):
    same_as_missing(lambda i: bob.get(f"/v1/prompts/{i}"), a.prompt_id)
    same_as_missing(lambda i: bob.get(f"/v1/prompts/{i}", params={"version": 1}), a.prompt_id)


def p_update_prompt(a, alice, bob):
    same_as_missing(
        lambda i: bob.post(f"/v1/prompts/{i}", json={"prompt": "bob's", "version": 1}),
        a.prompt_id,
    )
    _alices_prompt_unchanged(a, alice)


def p_prompt_versions(a, alice, bob):
    same_as_missing(lambda i: bob.get(f"/v1/prompts/{i}/versions"), a.prompt_id)


def p_set_default_prompt_version(a, alice, bob):
    same_as_missing(
        lambda i: bob.post(f"/v1/prompts/{i}/set-default-version", json={"version": 1}),
        a.prompt_id,
    )


def p_delete_prompt(a, alice, bob):
    same_as_missing(lambda i: bob.delete(f"/v1/prompts/{i}"), a.prompt_id)
    _alices_prompt_unchanged(a, alice)


PROBES: dict[tuple[str, str], Callable[[Alices, httpx.Client, httpx.Client], None]] = {
    ("POST", "/v1/responses"): p_create_response,
    ("POST", "/v1/responses/input_tokens"): p_input_tokens,
    ("POST", "/v1/responses/compact"): p_compact,
    ("WEBSOCKET", "/v1/responses"): p_websocket,
    ("GET", "/v1/responses/{response_id}"): p_get_response,
    ("POST", "/v1/responses/{response_id}/cancel"): p_cancel_response,
    ("DELETE", "/v1/responses/{response_id}"): p_delete_response,
    ("GET", "/v1/responses"): p_list_responses,
    ("GET", "/v1/responses/{response_id}/input_items"): p_input_items,
    ("POST", "/v1/conversations"): p_create_conversation,
    ("GET", "/v1/conversations"): p_list_conversations,
    ("GET", "/v1/conversations/{conversation_id}"): p_get_conversation,
    ("POST", "/v1/conversations/{conversation_id}"): p_update_conversation,
    ("DELETE", "/v1/conversations/{conversation_id}"): p_delete_conversation,
    ("POST", "/v1/conversations/{conversation_id}/items"): p_add_items,
    ("GET", "/v1/conversations/{conversation_id}/items"): p_list_items,
    ("GET", "/v1/conversations/{conversation_id}/items/{item_id}"): _item_routes("GET"),
    ("DELETE", "/v1/conversations/{conversation_id}/items/{item_id}"): _item_routes("DELETE"),
    ("POST", "/v1/chat/completions"): p_create_completion,
    ("GET", "/v1/chat/completions"): p_list_completions,
    ("GET", "/v1/chat/completions/{completion_id}"): p_get_completion,
    ("GET", "/v1/chat/completions/{completion_id}/messages"): p_completion_messages,
    ("DELETE", "/v1/chat/completions/{completion_id}"): p_delete_completion,
    ("POST", "/v1/prompts"): p_create_prompt,
    ("GET", "/v1/prompts"): p_list_prompts,
    ("GET", "/v1/prompts/{prompt_id}"): p_get_prompt,
    ("POST", "/v1/prompts/{prompt_id}"): p_update_prompt,
    ("GET", "/v1/prompts/{prompt_id}/versions"): p_prompt_versions,
    ("POST", "/v1/prompts/{prompt_id}/set-default-version"): p_set_default_prompt_version,
    ("DELETE", "/v1/prompts/{prompt_id}"): p_delete_prompt,
}


# -- files and vector stores -----------------------------------------------------------


def p_upload_file(a, alice, bob):
    made = ok(
        bob.post("/v1/files", files={"file": ("b.txt", b"bob")}, data={"purpose": "assistants"})
    )
    absent(ok(alice.get("/v1/files")), made["id"])
    same_as_missing(lambda i: alice.get(f"/v1/files/{i}"), made["id"])


def p_list_files(a, alice, bob):
    absent(ok(bob.get("/v1/files")), a.file_id)
    same_as_missing(lambda i: bob.get("/v1/files", params={"after": i}), a.file_id, error=False)


def _file_route(method: str, suffix: str = ""):
    def probe(a, alice, bob):
        theirs = same_as_missing(lambda i: bob.request(method, f"/v1/files/{i}{suffix}"), a.file_id)
        assert theirs.status_code == 404
        ok(alice.get(f"/v1/files/{a.file_id}"))

    return probe


def p_create_vector_store(a, alice, bob):
    theirs = same_as_missing(
        lambda i: bob.post("/v1/vector_stores", json={"file_ids": [i]}), a.file_id
    )
    assert theirs.json()["error"]["param"] == "file_ids[0]"
    made = ok(bob.post("/v1/vector_stores", json={"name": "bob"}))
    same_as_missing(lambda i: alice.get(f"/v1/vector_stores/{i}"), made["id"])


def p_list_vector_stores(a, alice, bob):
    absent(ok(bob.get("/v1/vector_stores", params={"limit": 100})), a.vector_store_id)
    same_as_missing(
        lambda i: bob.get("/v1/vector_stores", params={"after": i}),
        a.vector_store_id,
        error=False,
    )


def _store_route(method: str, suffix: str = "", body: dict | None = None):
    """Bob names alice's vector store (and, under it, her file or batch)."""

    def probe(a, alice, bob):
        path = suffix.format(file_id=a.file_id, batch_id=a.batch_id)
        theirs = same_as_missing(
            lambda i: bob.request(method, f"/v1/vector_stores/{i}{path}", json=body),
            a.vector_store_id,
        )
        assert theirs.status_code == 404
        store = ok(alice.get(f"/v1/vector_stores/{a.vector_store_id}"))
        assert store["name"] == "alice" and store["file_counts"]["total"] == 1

    return probe


def _own_store_route(method: str, suffix: str, body: Callable[[str], dict] | None = None):
    """Bob names alice's file or batch under a vector store of his own."""

    def probe(a, alice, bob):
        own = ok(bob.post("/v1/vector_stores", json={"name": "bob"}))["id"]
        real = a.batch_id if "{batch}" in suffix else a.file_id
        theirs = same_as_missing(
            lambda i: bob.request(
                method,
                f"/v1/vector_stores/{own}" + suffix.replace("{batch}", i).replace("{file}", i),
                json=body(i) if body else None,
            ),
            real,
        )
        assert theirs.status_code == 404
        ok(alice.get(f"/v1/files/{a.file_id}"))

    return probe


_VS = "/v1/vector_stores/{vector_store_id}"
PROBES.update(
    {
        ("POST", "/v1/files"): p_upload_file,
        ("GET", "/v1/files"): p_list_files,
        ("GET", "/v1/files/{file_id}"): _file_route("GET"),
        ("GET", "/v1/files/{file_id}/content"): _file_route("GET", "/content"),
        ("DELETE", "/v1/files/{file_id}"): _file_route("DELETE"),
        ("POST", "/v1/vector_stores"): p_create_vector_store,
        ("GET", "/v1/vector_stores"): p_list_vector_stores,
        ("GET", _VS): _store_route("GET"),
        ("POST", _VS): _store_route("POST", "", {"name": "bob"}),
        ("DELETE", _VS): _store_route("DELETE"),
        ("POST", _VS + "/search"): _store_route("POST", "/search", {"query": "secret"}),
        ("POST", _VS + "/files"): _own_store_route("POST", "/files", lambda i: {"file_id": i}),
        ("GET", _VS + "/files"): _store_route("GET", "/files"),
        ("GET", _VS + "/files/{file_id}"): _own_store_route("GET", "/files/{file}"),
        ("POST", _VS + "/files/{file_id}"): _own_store_route(
            "POST", "/files/{file}", lambda i: {"attributes": {"a": "b"}}
        ),
        ("DELETE", _VS + "/files/{file_id}"): _own_store_route("DELETE", "/files/{file}"),
        ("GET", _VS + "/files/{file_id}/content"): _store_route("GET", "/files/{file_id}/content"),
        ("POST", _VS + "/file_batches"): _own_store_route(
            "POST", "/file_batches", lambda i: {"file_ids": [i]}
        ),
        ("GET", _VS + "/file_batches/{batch_id}"): _own_store_route("GET", "/file_batches/{batch}"),
        ("POST", _VS + "/file_batches/{batch_id}/cancel"): _own_store_route(
            "POST", "/file_batches/{batch}/cancel"
        ),
        ("GET", _VS + "/file_batches/{batch_id}/files"): _own_store_route(
            "GET", "/file_batches/{batch}/files"
        ),
    }
)


def test_every_route_is_classified():
    unknown = [
        f"{m} {p}"
        for m, p in ROUTES
        if (m, p) not in PROBES | CONSOLE | dict.fromkeys(PUBLIC | SERVER_WIDE | ADMIN_ONLY)
    ]
    assert not unknown, f"routes with no isolation probe: {unknown}; add one to PROBES"


@pytest.mark.parametrize("route", ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
def test_route_needs_a_key(world, route):
    """Without a key every route but the public ones answers 401, before anything runs."""
    server, _, _ = world
    method, path = route
    if route in CONSOLE:
        with http(server, None) as anonymous:
            answer = anonymous.get(CONSOLE[route], follow_redirects=True)
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith(("text/html", "text/css"))
        return
    if method == "WEBSOCKET":  # the upgrade is refused before the socket opens
        with pytest.raises(InvalidStatus) as refused:
            connect(f"ws://127.0.0.1:{server.port}{path}", open_timeout=10)
        assert refused.value.response.status_code == 403
        return
    concrete = path.replace("{model_id:path}", "m").replace("{", "").replace("}", "")
    with http(server, None) as anonymous:
        answer = anonymous.request(method, concrete)
    if route in PUBLIC:
        assert answer.status_code == 200
    else:
        assert answer.status_code == 401, answer.text
        assert answer.json()["error"]["code"] == "invalid_api_key"


@pytest.mark.parametrize("route", sorted(PROBES), ids=[f"{m} {p}" for m, p in sorted(PROBES)])
def test_another_owner_finds_nothing(world, alices, route):
    _, alice, bob = world
    PROBES[route](alices, alice, bob)


@pytest.mark.parametrize(
    "route", sorted(ADMIN_ONLY), ids=[f"{m} {p}" for m, p in sorted(ADMIN_ONLY)]
)
def test_admin_routes_refuse_api_keys(world, route):
    _, _, bob = world
    method, path = route
    answer = bob.request(method, path.replace("{key_id}", "key_x"), json={"owner": "bob"})
    assert answer.status_code == 401 and answer.json()["error"]["code"] == "invalid_api_key"
