"""The composition root: settings in, a FastAPI app with its services and error handling out."""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from loom import __version__
from loom.api import chat, conversations, embeddings, health, metrics, models, responses
from loom.api.body import param_of
from loom.api.json import OrjsonResponse
from loom.api.openapi_docs import finish_openapi
from loom.config import Settings
from loom.errors import LoomError
from loom.inference.factory import build_providers
from loom.inference.registry import ModelRegistry
from loom.inference.test_id import TestIdMiddleware
from loom.observability import tracing
from loom.observability.http import (
    REQUEST_ID_HEADER,
    RequestObservabilityMiddleware,
    current_request_id,
)
from loom.services import Services
from loom.store import open_stores

log = logging.getLogger("loom")


def _error(status: int, message: str, type_: str, param: str | None = None, code=None):
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return OrjsonResponse(body, status_code=status)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(LoomError)
    async def loom_error(_: Request, exc: LoomError):
        return OrjsonResponse(exc.to_dict(), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError):
        err = exc.errors()[0]
        loc = tuple(p for p in err.get("loc", ()) if p not in ("query", "path", "body"))
        param = param_of(loc)
        return _error(
            400,
            f"Invalid value for '{param}': {err.get('msg')}",
            "invalid_request_error",
            param,
            "invalid_value",
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException):
        code = "not_found" if exc.status_code == 404 else None
        return _error(exc.status_code, str(exc.detail), "invalid_request_error", None, code)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception):
        log.exception("unhandled error")
        response = _error(500, "The server had an error processing the request.", "server_error")
        # This handler runs outside every middleware: put the request id on by hand.
        request_id = current_request_id.get()
        if request_id:
            response.headers[REQUEST_ID_HEADER.decode()] = request_id
        return response


def _document_errors(app: FastAPI) -> None:
    """`/openapi.json` with Loom's real error answers (see api/openapi_docs.py)."""
    generate = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            app.openapi_schema = finish_openapi(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def build_app(settings: Settings) -> FastAPI:
    # Built eagerly so a bad provider or model file fails at start-up, before serving.
    registry = ModelRegistry(build_providers(settings))

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        stores = await open_stores(settings.db_url)
        tracing.configure(**settings.tracing.model_dump())
        app.state.services = Services(settings=settings, models=registry, stores=stores)
        try:
            yield
        finally:
            await app.state.services.aclose()
            await asyncio.to_thread(tracing.shutdown)  # flushes the batched spans

    app = FastAPI(
        title="Loom",
        version=__version__,
        description="An OpenAI-compatible agentic API server.",
        lifespan=lifespan,
        default_response_class=OrjsonResponse,
    )
    _install_error_handlers(app)
    _document_errors(app)
    for module in (models, chat, embeddings, health, responses, conversations):
        app.include_router(module.router, prefix="/v1")
    app.include_router(metrics.router)
    app.add_middleware(TestIdMiddleware)
    app.add_middleware(RequestObservabilityMiddleware)  # outermost: sees every response
    return app
