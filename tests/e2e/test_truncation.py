"""`truncation`: with `auto` the oldest items are dropped to fit the model's window; without
it, a context that does not fit fails with OpenAI's `context_length_exceeded`."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import yaml

from tests.conftest import run_loom
from tests.support.schemas import validate_response
from tests.support.upstream import Turn

WINDOW = 300  # tokens, configured for `small/gpt-4o`
OPENAI_ERROR = {
    "message": "Your input exceeds the context window of this model. Please adjust your input "
    "and try again.",
    "type": "invalid_request_error",
    "param": "input",
    "code": "context_length_exceeded",
}
LONG = "Tell me about the weather in a great many words, please. " * 12  # ~170 tokens


@pytest.fixture(scope="module")
def small_window(upstream_server, tmp_path_factory):
    _, server = upstream_server
    tmp = Path(tmp_path_factory.mktemp("truncation"))
    config = {
        "providers": [
            {
                "name": "small",
                "base_url": f"{server.url}/v1",
                "context_windows": {"gpt-4o": WINDOW},
            }
        ],
        "local_models": [],
    }
    (tmp / "loom.yaml").write_text(yaml.safe_dump(config))
    env = {"LOOM_CONFIG": str(tmp / "loom.yaml"), "LOOM_DB_URL": f"sqlite+aiosqlite:///{tmp}/db"}
    with run_loom(env) as loom:
        yield loom.url


def respond(base: str, **body) -> httpx.Response:
    return httpx.post(f"{base}/v1/responses", json={"model": "small/gpt-4o", **body}, timeout=30)


def chain_of_long_turns(base: str, upstream, turns: int) -> str:
    """`turns` stored responses, each with a long input; the id of the last one."""
    previous = None
    for n in range(turns):
        upstream.script(Turn(text=f"Answer {n}."))
        body = {"input": f"Question {n}. {LONG}"}
        if previous:
            body |= {"previous_response_id": previous, "truncation": "auto"}
        response = respond(base, **body)
        assert response.status_code == 200, response.text
        previous = response.json()["id"]
    return previous


def test_auto_drops_the_oldest_items(small_window, upstream):
    last = chain_of_long_turns(small_window, upstream, 3)
    upstream.requests.clear()
    upstream.script(Turn(text="Sunny."))
    response = respond(
        small_window,
        input="And tomorrow?",
        previous_response_id=last,
        instructions="Be brief.",
        truncation="auto",
    )
    assert response.status_code == 200, response.text
    data = response.json()
    validate_response(data)
    assert data["status"] == "completed" and data["truncation"] == "auto"
    sent = [m["content"] for m in upstream.requests[0]["messages"]]
    # The instructions stay; the newest items that fit follow, oldest first, ending with
    # the new input. Earlier questions and answers were dropped.
    assert sent[0] == "Be brief."
    assert sent[-3:] == [f"Question 2. {LONG}", "Answer 2.", "And tomorrow?"]
    assert not any(text.startswith(("Question 0", "Question 1")) for text in sent)
    # The stored chain is untouched: the next turn still sees what it can fit.
    items = httpx.get(f"{small_window}/v1/responses/{data['id']}/input_items").json()
    assert [i["content"][0]["text"] for i in items["data"]] == ["And tomorrow?"]


def test_without_auto_the_error_is_openais(small_window, upstream):
    last = chain_of_long_turns(small_window, upstream, 2)
    upstream.requests.clear()
    for truncation in (None, "disabled"):
        body = {"input": "And tomorrow?", "previous_response_id": last}
        if truncation:
            body["truncation"] = truncation
        response = respond(small_window, **body)
        assert response.status_code == 400
        assert response.json() == {"error": OPENAI_ERROR}
    assert upstream.requests == []


def test_auto_fails_when_the_newest_input_alone_does_not_fit(small_window, upstream):
    response = respond(small_window, input=LONG * 3, truncation="auto")
    assert response.status_code == 400
    assert response.json() == {"error": OPENAI_ERROR}


def test_max_output_tokens_is_kept_free(small_window, upstream):
    # The input fits the window, but not together with room for 150 output tokens.
    upstream.script(Turn(text="ok"))
    assert respond(small_window, input=LONG).status_code == 200
    response = respond(small_window, input=LONG, max_output_tokens=150)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "context_length_exceeded"


def test_local_model_counts_with_its_own_tokenizer(tmp_path):
    """The embedded model's window is its n_ctx, and tokens are counted by its tokenizer."""
    config = {"local_models": [{"name": "tiny", "n_ctx": 256}]}
    (tmp_path / "loom.yaml").write_text(yaml.safe_dump(config))
    env = {
        "LOOM_CONFIG": str(tmp_path / "loom.yaml"),
        "LOOM_DB_URL": f"sqlite+aiosqlite:///{tmp_path}/db",
    }
    history = [
        {"role": "user", "content": f"Note {n}: " + "the sky is blue and the grass is green. " * 6}
        for n in range(4)
    ]
    body = {
        "model": "local/tiny",
        "input": [*history, {"role": "user", "content": "Say hi."}],
        "max_output_tokens": 16,
    }
    with run_loom(env) as loom:
        refused = httpx.post(f"{loom.url}/v1/responses", json=body, timeout=120)
        assert refused.status_code == 400
        assert refused.json() == {"error": OPENAI_ERROR}
        response = httpx.post(
            f"{loom.url}/v1/responses", json={**body, "truncation": "auto"}, timeout=120
        )
    assert response.status_code == 200, response.text
    usage = response.json()["usage"]
    # What the model saw fits in 256 tokens with the 16 reserved for output.
    assert 0 < usage["input_tokens"] <= 256 - 16
