"""Request-scoped dependencies shared by the routes: the app's services and the owner."""

from __future__ import annotations

from fastapi import Request

from loom.security.middleware import ANONYMOUS
from loom.services import Services

__all__ = ["ANONYMOUS", "owner", "services"]


async def services(request: Request) -> Services:
    return request.app.state.services


async def owner(request: Request) -> str:
    """The authenticated principal; every stored object belongs to one. The security
    middleware sets it from the API key (or "anonymous" with auth off) for every route."""
    return getattr(request.state, "owner", ANONYMOUS)
