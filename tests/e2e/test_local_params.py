"""The embedded model's column of the create-parameter audit: what it cannot honor is refused.

The refusals happen before the model is loaded or run, so these cases are fast. That the
honored fields have their effect is what the local model's own tests show; here each one is
checked to be accepted, so the mapping and the local provider cannot drift apart.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from loom.engine.params import CHAT_RULES, RESPONSES_RULES
from loom.errors import InvalidRequestError
from loom.inference.local.request import check_fields
from tests.conftest import run_loom
from tests.e2e.test_create_params import CHAT_VALUES, RESPONSES_CASES

MODEL = "local/smollm2-135m"
MESSAGES = [{"role": "user", "content": "Hi"}]


@pytest.fixture(scope="module")
def local_url(tmp_path_factory):
    db = tmp_path_factory.mktemp("local-params") / "loom.db"
    with run_loom({"LOOM_DB_URL": f"sqlite+aiosqlite:///{db}"}) as loom:
        yield loom.url


LOCAL_REFUSED_CHAT = sorted(n for n, r in CHAT_RULES.items() if r.local == "refused")
LOCAL_HONORED_CHAT = sorted(n for n, r in CHAT_RULES.items() if r.local == "honored")


@pytest.mark.parametrize("name", LOCAL_REFUSED_CHAT)
def test_chat_field_the_local_model_refuses(name, local_url):
    body = {"model": MODEL, "messages": MESSAGES, name: CHAT_VALUES[name]}
    response = httpx.post(f"{local_url}/v1/chat/completions", json=body, timeout=30)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == name and error["type"] == "invalid_request_error"


def test_the_local_provider_refuses_exactly_what_the_mapping_says():
    refused = set()
    for name, value in CHAT_VALUES.items():
        body: dict[str, Any] = {"model": "smollm2-135m", "messages": MESSAGES}
        if value is not None:
            # The one tier the embedded model has; other tiers are refused (tested below).
            body[name] = "default" if name == "service_tier" else value
        try:
            check_fields(body)
        except InvalidRequestError as exc:
            refused.add(exc.param)
    assert refused == set(LOCAL_REFUSED_CHAT)
    assert set(LOCAL_HONORED_CHAT) == set(CHAT_VALUES) - refused


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"service_tier": "flex"}, "service_tier"),
        ({"stream_options": {"include_obfuscation": True}}, "stream_options.include_obfuscation"),
        ({"modalities": ["text", "audio"]}, "modalities"),
        ({"n": 2}, "n"),
        ({"best_of": 2}, "best_of"),  # not an OpenAI field at all
    ],
)
def test_chat_values_the_local_model_cannot_honor(body, param, local_url):
    full = {"model": MODEL, "messages": MESSAGES, **body}
    response = httpx.post(f"{local_url}/v1/chat/completions", json=full, timeout=30)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


# Responses fields the embedded model refuses, under the name the client used.
LOCAL_RESPONSES_PARAMS = {
    "reasoning": "reasoning.effort",
    "top_logprobs": "top_logprobs",
}


@pytest.mark.parametrize(
    "name", sorted(n for n, r in RESPONSES_RULES.items() if r.local == "refused")
)
def test_responses_field_the_local_model_refuses(name, local_url):
    body = {"model": MODEL, "input": "Hi", name: RESPONSES_CASES[name].value}
    response = httpx.post(f"{local_url}/v1/responses", json=body, timeout=30)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == LOCAL_RESPONSES_PARAMS.get(name, name)


def test_responses_text_verbosity_refused_by_the_local_model(local_url):
    body = {"model": MODEL, "input": "Hi", "text": {"verbosity": "low"}}
    response = httpx.post(f"{local_url}/v1/responses", json=body, timeout=30)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "text.verbosity"


def test_check_fields_refuses_unknown_fields():
    with pytest.raises(InvalidRequestError) as caught:
        check_fields({"model": "m", "messages": MESSAGES, "mirostat": 2})
    assert caught.value.param == "mirostat"


def test_logprobs_include_refused_by_the_local_model(local_url):
    body = {"model": MODEL, "input": "Hi", "include": ["message.output_text.logprobs"]}
    response = httpx.post(f"{local_url}/v1/responses", json=body, timeout=30)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "include"
