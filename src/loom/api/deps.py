"""Request-scoped dependencies shared by the routes: the app's services and the owner."""

from __future__ import annotations

from fastapi import Request

from loom.services import Services

ANONYMOUS = "anonymous"


async def services(request: Request) -> Services:
    return request.app.state.services


async def owner(request: Request) -> str:
    """The authenticated principal; every stored object belongs to one."""
    return getattr(request.state, "owner", ANONYMOUS)
