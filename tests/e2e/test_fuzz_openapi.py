"""Fuzz Loom over HTTP from its own `/openapi.json` with schemathesis.

Every operation gets generated requests, valid by the schema (positive) and invalid
(negative). Each answer must not be a 5xx, must have a documented content type, and must
validate against the documented schema of its status: the `openai` SDK's types for 200s,
OpenAI's error body for 4xx. Half of the generated bodies that name a model get a model
Loom serves, so whole turns run (against the fake upstream) instead of stopping at 404.

The CI run is bounded and repeatable (`derandomize`): `LOOM_FUZZ_EXAMPLES` examples per
operation and mode (default 64; a quarter of that for the four operations whose bodies
are the SDK's largest types, which cost ~20 times more each to generate), which makes
more than 2,000 cases. A longer run, with fresh random data each time, by hand:

    LOOM_FUZZ_EXAMPLES=1000 LOOM_FUZZ_RANDOM=1 .venv/bin/pytest tests/e2e/test_fuzz_openapi.py
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Iterator

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)

from tests.conftest import run_loom
from tests.support.servers import ThreadedServer
from tests.support.upstream import Turn

EXAMPLES = int(os.environ.get("LOOM_FUZZ_EXAMPLES", "64"))
RANDOM = bool(os.environ.get("LOOM_FUZZ_RANDOM"))
CHECKS = [not_a_server_error, content_type_conformance, response_schema_conformance]
SERVED_MODEL = "openai/gpt-4o"
_MODEL_BODIES = {"/v1/responses", "/v1/chat/completions", "/v1/embeddings"}
_LARGE_BODIES = {
    "POST /v1/responses",
    "POST /v1/chat/completions",
    "POST /v1/conversations",
    "POST /v1/conversations/{conversation_id}/items",
}


def _with_served_model(case) -> None:
    """Every other body that takes a model asks for one Loom serves; MCP tools are taken
    out of those, so a turn never dials a generated URL."""
    body = case.body
    if not isinstance(body, dict) or case.operation.path not in _MODEL_BODIES:
        return
    digest = hashlib.sha256(repr(sorted(body)).encode() + repr(body.get("model")).encode())
    if digest.digest()[0] % 2:
        return
    body["model"] = SERVED_MODEL
    if isinstance(body.get("tools"), list):
        body["tools"] = [
            t for t in body["tools"] if not (isinstance(t, dict) and t.get("type") == "mcp")
        ]


def _fuzz(operation, mode, base_url: str, session, cases: Counter, failures: list) -> None:
    """Run one operation's generated cases in one mode; record failures, do not stop."""

    @settings(
        max_examples=EXAMPLES // 4 if operation.label in _LARGE_BODIES else EXAMPLES,
        deadline=None,
        derandomize=not RANDOM,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case):
        _with_served_model(case)
        cases[f"{operation.label} {mode.value}"] += 1
        response = case.call(base_url=base_url, session=session, timeout=30)
        cases[f"{operation.label} -> {response.status_code}"] += 1
        try:
            case.validate_response(response, checks=CHECKS)
        except FailureGroup as exc:
            failures.append(f"{operation.label} [{mode.value}]: {exc}"[:2000])

    try:
        run()
    except Unsatisfiable:
        # No invalid request exists for an operation without parameters or body.
        assert mode is GenerationMode.NEGATIVE and not operation.body, operation.label


@pytest.fixture(scope="module")
def fuzzed_loom(upstream_server, tmp_path_factory) -> Iterator[ThreadedServer]:
    """A Loom of its own, on a fresh database: what GET routes list depends only on what
    this run created, so the run is the same every time, whatever ran before."""
    _, server = upstream_server
    db = tmp_path_factory.mktemp("fuzz") / "loom.db"
    env = {
        "OPENAI_API_KEY": "k",
        "OPENAI_BASE_URL": f"{server.url}/v1",
        "LOOM_DB_URL": f"sqlite+aiosqlite:///{db}",
        "LOOM_LOCAL_MODELS": "off",
    }
    with run_loom(env) as loom:
        yield loom


def test_fuzz_every_operation(fuzzed_loom, upstream):
    loom_server = fuzzed_loom
    upstream.default = Turn(text="fuzzed", prompt_tokens=3, completion_tokens=2)
    schema = schemathesis.openapi.from_url(f"{loom_server.url}/openapi.json")
    session = requests.Session()
    cases: Counter[str] = Counter()
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        modes = [GenerationMode.POSITIVE]
        if operation.body or len(operation.query):
            # Free-form string path parameters alone cannot be made invalid.
            modes.append(GenerationMode.NEGATIVE)
        for mode in modes:
            _fuzz(operation, mode, loom_server.url, session, cases, failures)

    statuses = {k: v for k, v in cases.items() if " -> " in k}
    for key in statuses:
        del cases[key]
    total = sum(cases.values())
    print(f"schemathesis: {total} cases over {len(cases)} operation/mode pairs")
    print("answers:", dict(sorted(statuses.items())))
    assert not failures, f"{len(failures)} failing cases:\n" + "\n\n".join(failures[:15])
    assert total >= min(2000, 30 * EXAMPLES), cases
    operations = {label.rsplit(" ", 1)[0] for label in cases}
    assert len(operations) >= 22, operations
    # Whole turns ran and were checked against the SDK's Response schema, not only 4xx.
    assert statuses.get("POST /v1/responses -> 200", 0) >= 1, statuses
    assert statuses.get("POST /v1/chat/completions -> 200", 0) >= 1, statuses
