"""API keys end to end: auth off and on, OpenAI's 401 bodies, keys made and revoked at run
time through the admin API and the `loom keys` CLI, on SQLite and on PostgreSQL."""

from __future__ import annotations

import contextlib
import logging

import openai
import pytest
from click.testing import CliRunner

from loom.cli import main as cli
from tests.conftest import run_loom
from tests.support.keys import ADMIN_KEY, ALICE_KEY, BOB_KEY, authed_env, http, sdk
from tests.support.pg import pg_database
from tests.support.upstream import Turn

MODEL = "openai/gpt-4o"


def _401(message: str) -> dict:
    return {
        "error": {
            "message": message,
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_api_key",
        }
    }


MISSING = _401(
    "You didn't provide an API key. You need to provide your API key in an Authorization "
    "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
)
WRONG = _401("Incorrect API key provided.")


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)]
)
def authed(request, loom_env, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("auth")
    sqlite = contextlib.nullcontext(f"sqlite+aiosqlite:///{workdir / 'loom.db'}")
    with pg_database() if request.param == "postgresql" else sqlite as db_url:
        env = authed_env(loom_env, workdir, db_url)
        with run_loom(env) as server:
            yield server, env


def test_auth_off_by_default_serves_anyone_and_says_so(loom_env, tmp_path, upstream, caplog):
    env = {**loom_env, "LOOM_DB_URL": f"sqlite+aiosqlite:///{tmp_path / 'open.db'}"}
    with caplog.at_level(logging.INFO, logger="loom"), run_loom(env) as server:
        upstream.script(Turn(text="open"))
        with http(server, None) as client:
            created = client.post("/v1/responses", json={"model": MODEL, "input": "hi"})
            assert created.status_code == 200
            assert client.get(f"/v1/responses/{created.json()['id']}").status_code == 200
            # The admin API is off without an admin key.
            assert client.get("/v1/organization/api_keys").status_code == 401
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("auth:")]
    assert len(lines) == 1 and lines[0].startswith("auth: off")


def test_missing_or_wrong_key_gets_openai_401(authed, caplog):
    server, _ = authed
    with caplog.at_level(logging.DEBUG):
        with http(server, None) as client:
            for method, path in [
                ("GET", "/v1/responses"),
                ("POST", "/v1/responses"),
                ("GET", "/v1/models"),
                ("GET", "/v1/nowhere"),
            ]:
                answer = client.request(method, path)
                assert answer.status_code == 401, path
                assert answer.json() == MISSING
        with http(server, "sk-wrong-key-123") as client:
            answer = client.get("/v1/conversations/conv_x")
            assert answer.status_code == 401 and answer.json() == WRONG
        with pytest.raises(openai.AuthenticationError) as caught:
            sdk(server, "sk-wrong-key-123").models.list()
        assert caught.value.code == "invalid_api_key"
        # Only /v1/health and the API description are public.
        with http(server, None) as client:
            assert client.get("/v1/health").status_code == 200
            assert client.get("/openapi.json").status_code == 200
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "sk-wrong-key-123" not in logged and ALICE_KEY not in logged


def test_configured_keys_from_yaml_and_env_act_for_their_owner(authed, upstream):
    server, _ = authed
    upstream.script(Turn(text="for alice"), Turn(text="for bob"))
    alice, bob = sdk(server, ALICE_KEY), sdk(server, BOB_KEY)
    mine = alice.responses.create(model=MODEL, input="hi")
    theirs = bob.responses.create(model=MODEL, input="hi")
    assert alice.responses.retrieve(mine.id).output_text == "for alice"
    assert bob.responses.retrieve(theirs.id).output_text == "for bob"
    with pytest.raises(openai.NotFoundError):
        bob.responses.retrieve(mine.id)


def test_admin_key_creates_lists_and_revokes_keys(authed, upstream):
    server, _ = authed
    with http(server, ADMIN_KEY) as admin:
        made = admin.post("/v1/organization/api_keys", json={"owner": "dave", "name": "ci"})
        assert made.status_code == 200, made.text
        key = made.json()
        assert key["object"] == "organization.api_key" and key["owner"] == "dave"
        assert key["value"].startswith("sk-loom-")
        assert key["redacted_value"].endswith(key["value"][-4:])

        upstream.script(Turn(text="dave's"))
        dave = sdk(server, key["value"])
        created = dave.responses.create(model=MODEL, input="hi")
        assert dave.responses.retrieve(created.id).output_text == "dave's"
        with pytest.raises(openai.NotFoundError):
            sdk(server, ALICE_KEY).responses.retrieve(created.id)

        listed = admin.get("/v1/organization/api_keys", params={"limit": 100}).json()
        mine = [k for k in listed["data"] if k["id"] == key["id"]]
        assert len(mine) == 1 and "value" not in mine[0] and mine[0]["revoked_at"] is None
        assert key["value"] not in str(listed)
        got = admin.get(f"/v1/organization/api_keys/{key['id']}").json()
        assert got["id"] == key["id"] and "value" not in got

        gone = admin.delete(f"/v1/organization/api_keys/{key['id']}")
        assert gone.json() == {
            "object": "organization.api_key.deleted",
            "id": key["id"],
            "deleted": True,
        }
        with pytest.raises(openai.AuthenticationError):
            dave.responses.retrieve(created.id)
        assert admin.get(f"/v1/organization/api_keys/{key['id']}").json()["revoked_at"]
        missing = admin.delete("/v1/organization/api_keys/key_nope")
        assert missing.status_code == 404 and missing.json()["error"]["param"] == "key_id"
        bad = admin.post("/v1/organization/api_keys", json={"name": "no owner"})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "owner"

    # The admin key manages keys only; an API key cannot manage keys.
    with http(server, ADMIN_KEY) as admin:
        assert admin.get("/v1/responses").status_code == 401
    with http(server, ALICE_KEY) as alice:
        answer = alice.get("/v1/organization/api_keys")
        assert answer.status_code == 401 and answer.json()["error"]["code"] == "invalid_api_key"


def test_cli_creates_lists_and_revokes_keys_the_server_honours(authed, upstream):
    server, env = authed
    runner = CliRunner()
    cli_env = {"LOOM_DB_URL": env["LOOM_DB_URL"], "LOOM_LOCAL_MODELS": "off"}
    made = runner.invoke(cli, ["keys", "create", "--owner", "erin", "--name", "cli"], env=cli_env)
    assert made.exit_code == 0, made.output
    fields = dict(line.split(":", 1) for line in made.output.splitlines())
    key_id, value = fields["id"].strip(), fields["key"].strip()
    assert fields["owner"].strip() == "erin" and value.startswith("sk-loom-")

    upstream.script(Turn(text="erin's"))
    erin = sdk(server, value)
    created = erin.responses.create(model=MODEL, input="hi")
    assert erin.responses.retrieve(created.id).output_text == "erin's"

    listed = runner.invoke(cli, ["keys", "list"], env=cli_env)
    assert listed.exit_code == 0
    row = next(line for line in listed.output.splitlines() if line.startswith(key_id))
    assert row.split("\t")[1:4] == ["erin", f"sk-loom-...{value[-4:]}", "active"]
    assert value not in listed.output

    revoked = runner.invoke(cli, ["keys", "revoke", key_id], env=cli_env)
    assert revoked.exit_code == 0 and key_id in revoked.output
    with pytest.raises(openai.AuthenticationError):
        erin.responses.retrieve(created.id)
    listed = runner.invoke(cli, ["keys", "list"], env=cli_env)
    assert f"{key_id}\terin\tsk-loom-...{value[-4:]}\trevoked" in listed.output
    again = runner.invoke(cli, ["keys", "revoke", "key_nope"], env=cli_env)
    assert again.exit_code == 1 and "no API key" in again.output


def test_a_key_made_with_the_cli_turns_auth_on(loom_env, tmp_path):
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    made = CliRunner().invoke(
        cli, ["keys", "create", "--owner", "frank"], env={"LOOM_DB_URL": db_url}
    )
    assert made.exit_code == 0
    value = made.output.split("key:", 1)[1].strip()
    with run_loom({**loom_env, "LOOM_DB_URL": db_url}) as server:
        with http(server, None) as anonymous:
            assert anonymous.get("/v1/responses").json() == MISSING
        with http(server, value) as frank:
            assert frank.get("/v1/responses").status_code == 200


def test_auth_on_is_said_once_at_start_up_without_the_key(loom_env, tmp_path, caplog):
    env = {
        **loom_env,
        "LOOM_DB_URL": f"sqlite+aiosqlite:///{tmp_path / 'on.db'}",
        "LOOM_API_KEYS": "sk-startup-secret=gina",
    }
    with caplog.at_level(logging.DEBUG), run_loom(env):
        pass
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("auth:")]
    assert lines == ["auth: on (1 configured keys, 0 keys in the database, admin API off)"]
    assert "sk-startup-secret" not in "\n".join(r.getMessage() for r in caplog.records)
