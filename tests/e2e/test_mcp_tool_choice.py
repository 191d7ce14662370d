"""A forced tool choice forces one round of calls; the model then answers freely."""

from __future__ import annotations

import pytest

from tests.support.upstream import Turn

pytest_plugins = ["tests.support.mcp_server"]  # the MCP server fixtures


@pytest.mark.parametrize("choice", ["required", {"type": "mcp", "server_label": "chem"}])
def test_forced_choice_applies_to_the_first_model_call(client, upstream, mcp_server, choice):
    upstream.script(
        Turn(tool_calls=[("get_boiling_point", {"liquid_name": "myawesomeliquid"})]),
        Turn(text="It boils at -100 degrees Celsius."),
    )
    response = client.responses.create(
        model="openai/gpt-4o",
        input="Boiling point of myawesomeliquid?",
        tools=[
            {
                "type": "mcp",
                "server_label": "chem",
                "server_url": mcp_server.http_url,
                "require_approval": "never",
            }
        ],
        tool_choice=choice,
    )
    assert response.output_text == "It boils at -100 degrees Celsius."
    first, second = upstream.requests
    assert first["tool_choice"] != "auto"
    assert second["tool_choice"] == "auto"
