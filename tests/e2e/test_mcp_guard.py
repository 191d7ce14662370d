"""The MCP URL guard end to end: with the default policy, a server_url on loopback (by a
name that resolves there, or by address) or at a cloud metadata address is refused with a
400 naming `tools[i].server_url`, before any connection; allowed, the same server works."""

from __future__ import annotations

import openai
import pytest

from tests.conftest import run_loom
from tests.support.upstream import Turn

pytest_plugins = ["tests.support.mcp_server"]  # the MCP server fixtures

MODEL = "openai/gpt-4o"
FUNCTION = {"type": "function", "name": "f", "parameters": {"type": "object"}}


@pytest.fixture(scope="module")
def guarded(loom_env, tmp_path_factory):
    """Loom with the default guard: nothing on loopback or private ranges is allowed."""
    env = {k: v for k, v in loom_env.items() if k != "LOOM_MCP_ALLOW"}
    env["LOOM_DB_URL"] = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('guard') / 'loom.db'}"
    with run_loom(env) as server:
        yield openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0)


def mcp(url: str) -> dict:
    return {"type": "mcp", "server_label": "s", "server_url": url, "require_approval": "never"}


@pytest.mark.parametrize(
    "url",
    [
        "localhost",  # a name that resolves to 127.0.0.1 / ::1
        "http://127.0.0.1:{port}/mcp",
        "http://[::1]:{port}/mcp",
        "http://169.254.169.254/latest/meta-data",
        "http://metadata.google.internal/computeMetadata/v1",
        "http://[fd00:ec2::254]/",
    ],
)
def test_refused_urls_are_a_400_naming_the_tool(guarded, upstream, mcp_server, url):
    port = mcp_server.http_url.split(":")[2].split("/")[0]
    if url == "localhost":
        url = mcp_server.http_url.replace("127.0.0.1", "localhost")
        assert "localhost" in url
    url = url.format(port=port)
    with pytest.raises(openai.BadRequestError) as caught:
        guarded.responses.create(model=MODEL, input="hi", tools=[FUNCTION, mcp(url)])
    assert caught.value.param == "tools[1].server_url"
    assert caught.value.code == "invalid_value"
    assert "not allowed" in caught.value.message
    assert not mcp_server.seen.calls and not upstream.requests  # nothing was contacted


def test_an_allowed_loopback_server_is_used(client, upstream, mcp_server):
    """The suite's shared Loom allows 127.0.0.0/8 explicitly (LOOM_MCP_ALLOW)."""
    upstream.script(Turn(text="listed"))
    response = client.responses.create(
        model=MODEL, input="hi", tools=[mcp(mcp_server.http_url.replace("127.0.0.1", "localhost"))]
    )
    assert response.output[0].type == "mcp_list_tools" and response.output_text == "listed"
