"""Match a request's `mcp_approval_response` items to the approval requests they answer.

An MCP call that needs approval ends its turn with an `mcp_approval_request` item. The
client answers in a later request (chained by `previous_response_id`, in a conversation,
or by passing the request item back in `input`). Approved calls run at the start of that
later turn; denied ones are shown to the model as refused (see chat_messages.py). An
answer that matches no request, or one already answered, is the client's mistake: a 400
naming the input item, raised before anything runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from loom.errors import InvalidRequestError
from loom.tools.mcp_tools import McpServer
from loom.tools.toolset import ToolSet

Item = dict[str, Any]


@dataclass(frozen=True)
class ApprovedCall:
    request: Item  # the `mcp_approval_request` item
    server: McpServer


def _answered_in(history: list[Item]) -> set[str]:
    answered = set()
    for item in history:
        kind = item.get("type")
        if kind == "mcp_approval_response":
            answered.add(item.get("approval_request_id"))
        elif kind == "mcp_call" and item.get("approval_request_id"):
            answered.add(item["approval_request_id"])
    return answered


def approved_calls(
    history: list[Item], input_items: list[Item], toolset: ToolSet
) -> list[ApprovedCall]:
    """The approved calls to run, in input order. Raises 400 for an answer to no request."""
    responses = [i for i, item in enumerate(input_items) if item["type"] == "mcp_approval_response"]
    if not responses:
        return []
    requests = {
        item["id"]: item
        for item in history + input_items
        if item.get("type") == "mcp_approval_request"
    }
    answered = _answered_in(history)
    approved = []
    for i in responses:
        answer = input_items[i]
        request_id = answer["approval_request_id"]
        param = f"input[{i}].approval_request_id"
        request = requests.get(request_id)
        if request is None:
            raise InvalidRequestError(
                f"No MCP approval request with id '{request_id}' is in this response's history.",
                param=param,
                code="invalid_value",
            )
        if request_id in answered:
            raise InvalidRequestError(
                f"MCP approval request '{request_id}' has already been answered.",
                param=param,
                code="invalid_value",
            )
        answered.add(request_id)
        if not answer["approve"]:
            continue
        server = toolset.mcp_servers.get(request["server_label"])
        if server is None:
            raise InvalidRequestError(
                f"Approving '{request_id}' needs the MCP server '{request['server_label']}'"
                " in 'tools'.",
                param=param,
                code="invalid_value",
            )
        approved.append(ApprovedCall(request, server))
    return approved
