"""Prompt templates end to end: `/v1/prompts` and the create parameter `prompt`."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import run_loom
from tests.support.schemas import validate_response
from tests.support.upstream import Turn

MODEL = "openai/gpt-4o"
IMAGE = "https://example.com/cat.png"
PDF = "data:application/pdf;base64," + base64.b64encode(b"%PDF-1.4 tiny").decode()


@pytest.fixture(scope="module")
def base(upstream_server, tmp_path_factory) -> Iterator[str]:
    _, server = upstream_server
    db = Path(tmp_path_factory.mktemp("prompts")) / "loom.db"
    env = {
        "OPENAI_API_KEY": "test-key",
        "OPENAI_BASE_URL": f"{server.url}/v1",
        "LOOM_DB_URL": f"sqlite+aiosqlite:///{db}",
        "LOOM_LOCAL_MODELS": "off",
        # Two real API keys: each request's owner is its key's principal.
        "LOOM_API_KEYS": "sk-alice-key=alice,sk-bob-key=bob",
    }
    with run_loom(env) as loom:
        yield loom.url


def call(base: str, method: str, path: str, owner: str = "alice", **kw) -> httpx.Response:
    headers = {"Authorization": f"Bearer sk-{owner}-key"}
    return httpx.request(method, f"{base}/v1{path}", headers=headers, timeout=30, **kw)


def create_prompt(base: str, text: str, owner: str = "alice", **extra) -> dict:
    response = call(base, "POST", "/prompts", owner, json={"prompt": text, **extra})
    assert response.status_code == 200, response.text
    return response.json()


def respond(base: str, owner: str = "alice", **body) -> httpx.Response:
    return call(base, "POST", "/responses", owner, json={"model": MODEL, **body})


def test_versions_and_the_default_version(base, upstream):
    first = create_prompt(base, "You are a {{role}}. Answer in {{language}}.")
    pid = first["prompt_id"]
    assert pid.startswith("pmpt_") and len(pid) == 5 + 48
    assert first == {
        "prompt_id": pid,
        "version": 1,
        "prompt": "You are a {{role}}. Answer in {{language}}.",
        "variables": ["role", "language"],
        "is_default": True,
    }
    second = call(
        base,
        "POST",
        f"/prompts/{pid}",
        json={"prompt": "Be a {{role}}, briefly.", "version": 1},
    ).json()
    assert (second["version"], second["is_default"], second["variables"]) == (2, True, ["role"])

    # An update must start from the newest version; an edit based on an old one is refused.
    stale = call(base, "POST", f"/prompts/{pid}", json={"prompt": "x", "version": 1})
    assert stale.status_code == 400 and stale.json()["error"]["param"] == "version"

    third = call(
        base,
        "POST",
        f"/prompts/{pid}",
        json={"prompt": "Draft {{role}}", "version": 2, "set_as_default": False},
    ).json()
    assert (third["version"], third["is_default"]) == (3, False)

    versions = call(base, "GET", f"/prompts/{pid}/versions").json()["data"]
    assert [(v["version"], v["is_default"]) for v in versions] == [
        (1, False),
        (2, True),
        (3, False),
    ]
    assert call(base, "GET", f"/prompts/{pid}").json()["version"] == 2  # the default
    assert call(base, "GET", f"/prompts/{pid}", params={"version": 3}).json()["prompt"] == (
        "Draft {{role}}"
    )

    # A response without a version uses the default; with one, that version.
    upstream.script(Turn(text="Arr."), Turn(text="Ahoy."), Turn(text="Hi."))
    vars_ = {"role": "pirate", "language": "French"}
    default = respond(base, input="Hello", prompt={"id": pid, "variables": {"role": "pirate"}})
    assert default.status_code == 200, default.text
    assert upstream.requests[-1]["messages"][0] == {
        "role": "system",
        "content": "Be a pirate, briefly.",
    }
    data = default.json()
    validate_response(data)
    assert data["prompt"] == {"id": pid, "version": "2", "variables": {"role": "pirate"}}
    assert data["instructions"] == "Be a pirate, briefly."

    pinned = respond(base, input="Hello", prompt={"id": pid, "version": "1", "variables": vars_})
    assert pinned.status_code == 200, pinned.text
    assert upstream.requests[-1]["messages"][0]["content"] == (
        "You are a pirate. Answer in French."
    )

    # Setting the default version changes what an unversioned reference gets.
    chosen = call(base, "POST", f"/prompts/{pid}/set-default-version", json={"version": 1})
    assert chosen.json()["version"] == 1 and chosen.json()["is_default"] is True
    respond(base, input="Hello", prompt={"id": pid, "variables": vars_})
    assert upstream.requests[-1]["messages"][0]["content"] == (
        "You are a pirate. Answer in French."
    )
    listed = call(base, "GET", "/prompts").json()["data"]
    assert {"prompt_id": pid, "version": 1} in [
        {"prompt_id": p["prompt_id"], "version": p["version"]} for p in listed
    ]
    missing = call(base, "POST", f"/prompts/{pid}/set-default-version", json={"version": 9})
    assert missing.status_code == 404


def test_image_and_file_variables_and_input_placeholders(base, upstream):
    pid = create_prompt(base, "Describe {{picture}} and summarise {{doc}} for {{who}}.")[
        "prompt_id"
    ]
    upstream.script(Turn(text="A cat."))
    variables = {
        "picture": {"type": "input_image", "image_url": IMAGE},
        "doc": {"type": "input_file", "file_data": PDF, "filename": "a.pdf"},
        "who": {"type": "input_text", "text": "a child"},
    }
    response = respond(
        base,
        input=[{"role": "user", "content": "Keep it short for {{who}}."}],
        prompt={"id": pid, "variables": variables},
    )
    assert response.status_code == 200, response.text
    messages = upstream.requests[-1]["messages"]
    # Media cannot go into a system message: the filled template is a user message first.
    assert messages[0] == {
        "role": "user",
        "content": [
            {"type": "text", "text": "Describe "},
            {"type": "image_url", "image_url": {"url": IMAGE, "detail": "auto"}},
            {"type": "text", "text": " and summarise "},
            {"type": "file", "file": {"file_data": PDF, "filename": "a.pdf"}},
            {"type": "text", "text": " for a child."},
        ],
    }
    assert messages[1] == {"role": "user", "content": "Keep it short for a child."}


@pytest.mark.parametrize(
    ("prompt", "status", "param"),
    [
        ({"id": "pmpt_missing"}, 404, "prompt.id"),
        ({"variables": {}}, 400, "prompt.variables"),  # `topic` has no value
        ({"variables": {"topic": "x", "other": "y"}}, 400, "prompt.variables.other"),
        ({"variables": {"topic": {"type": "input_audio"}}}, 400, "prompt.variables.topic"),
        ({"version": "7", "variables": {"topic": "x"}}, 404, "prompt.id"),
        ({"version": "latest", "variables": {"topic": "x"}}, 400, "prompt.version"),
    ],
)
def test_bad_prompt_references(prompt, status, param, base, upstream):
    pid = create_prompt(base, "Talk about {{topic}}.")["prompt_id"]
    response = respond(base, input="Go", prompt={"id": pid, **prompt})
    assert response.status_code == status, response.text
    assert response.json()["error"]["param"] == param
    assert upstream.requests == []


def test_undeclared_variables_are_refused(base):
    response = call(
        base, "POST", "/prompts", json={"prompt": "Hi {{name}} {{x}}", "variables": ["name"]}
    )
    assert response.status_code == 400 and response.json()["error"]["param"] == "variables"


def test_no_key_no_prompts(base):
    response = httpx.get(f"{base}/v1/prompts", timeout=30)
    assert response.status_code == 401


def test_another_owners_prompt_is_404(base, upstream):
    pid = create_prompt(base, "Secret {{thing}}", owner="alice")["prompt_id"]
    for method, path, body in [
        ("GET", f"/prompts/{pid}", None),
        ("GET", f"/prompts/{pid}/versions", None),
        ("POST", f"/prompts/{pid}", {"prompt": "mine now", "version": 1}),
        ("POST", f"/prompts/{pid}/set-default-version", {"version": 1}),
        ("DELETE", f"/prompts/{pid}", None),
    ]:
        response = call(base, method, path, owner="bob", json=body)
        assert response.status_code == 404, (method, path, response.text)
    assert pid not in [p["prompt_id"] for p in call(base, "GET", "/prompts", "bob").json()["data"]]
    used = respond(base, owner="bob", input="x", prompt={"id": pid, "variables": {"thing": "a"}})
    assert used.status_code == 404 and used.json()["error"]["param"] == "prompt.id"
    assert upstream.requests == []
    # Still alice's, unchanged.
    assert call(base, "GET", f"/prompts/{pid}").json()["prompt"] == "Secret {{thing}}"


def test_delete(base):
    pid = create_prompt(base, "Bye {{name}}")["prompt_id"]
    deleted = call(base, "DELETE", f"/prompts/{pid}")
    assert deleted.json() == {"id": pid, "object": "prompt.deleted", "deleted": True}
    assert call(base, "GET", f"/prompts/{pid}").status_code == 404
    assert call(base, "DELETE", f"/prompts/{pid}").status_code == 404
