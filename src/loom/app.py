"""The composition root: settings in, a FastAPI app with its services and error handling out."""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from loom import __version__
from loom.api import (
    admin_keys,
    chat,
    conversations,
    embeddings,
    files,
    health,
    metrics,
    models,
    prompts,
    responses,
    responses_extra,
    responses_ws,
    vector_stores,
)
from loom.api.client_test_id import TestIdMiddleware
from loom.api.fast_lane import CreateResponseLane
from loom.api.json import OrjsonResponse
from loom.api.multipart_upload import FORM_OVERHEAD
from loom.api.openapi_docs import finish_openapi
from loom.api.sse import typed_event_bytes
from loom.config import Settings, load_settings
from loom.console.routes import mount_console
from loom.errors import LoomError, error_body, param_of
from loom.inference.factory import build_providers
from loom.inference.registry import ModelRegistry
from loom.observability import tracing
from loom.observability.http import (
    REQUEST_ID_HEADER,
    RequestObservabilityMiddleware,
    current_request_id,
)
from loom.rag.service import start_rag
from loom.security.keys import KeyRing
from loom.security.limits import KeyLimiter
from loom.security.middleware import Guard, SecurityMiddleware
from loom.security.url_guard import UrlPolicy
from loom.services import Services
from loom.store import open_stores

log = logging.getLogger("loom")


def _error(status: int, message: str, type_: str, param: str | None = None, code=None):
    return OrjsonResponse(error_body(message, type_, param, code), status_code=status)


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


# The finished /openapi.json, per set of routes: every app of a process shares it, as
# building the SDK types' schemas takes seconds of CPU.
_OPENAPI_CACHE: dict[tuple, dict] = {}
_OPENAPI_LOCK = threading.Lock()


def _document_errors(app: FastAPI) -> None:
    """`/openapi.json` with Loom's real error answers (see api/openapi_docs.py)."""
    generate = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            key = tuple(
                (getattr(r, "path", ""), tuple(sorted(getattr(r, "methods", None) or ())))
                for r in app.routes
            )
            with _OPENAPI_LOCK:
                if key not in _OPENAPI_CACHE:
                    _OPENAPI_CACHE[key] = finish_openapi(generate())
            app.openapi_schema = _OPENAPI_CACHE[key]
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


async def _key_ring(settings: Settings, stores) -> KeyRing:
    """Auth is on when a key is configured, an admin key is set, or the database holds
    an active key (made with `loom keys create`). Says which, once, at start-up."""
    auth = settings.auth
    stored = await stores.api_keys.count_active()
    enabled = bool(auth.api_keys or auth.admin_key or stored)
    if enabled:
        log.info(
            "auth: on (%d configured keys, %d keys in the database, admin API %s)",
            len(auth.api_keys),
            stored,
            "on" if auth.admin_key else "off",
        )
    else:
        log.warning(
            "auth: off; every request is served as 'anonymous'. Set LOOM_API_KEYS or"
            " auth.api_keys to require API keys."
        )
    return KeyRing(auth, stores.api_keys, enabled)


def build_app(settings: Settings) -> FastAPI:
    # Built eagerly so a bad provider or model file fails at start-up, before serving.
    registry = ModelRegistry(build_providers(settings))
    UrlPolicy(settings.mcp_guard)  # a bad allow/deny entry fails here too
    limits = settings.limits
    guard = Guard(
        KeyLimiter(limits.concurrent_requests_per_key, limits.requests_per_minute_per_key),
        limits.max_body_bytes,
        # An upload's file may be up to max_upload_bytes; its other form fields are small.
        upload_limits={
            "/v1/files": max(limits.max_body_bytes, settings.max_upload_bytes + FORM_OVERHEAD)
        },
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        stores = await open_stores(settings.db_url)
        tracing.configure(**settings.tracing.model_dump())
        rag = await start_rag(settings, stores.db, registry)
        app.state.services = Services(
            settings=settings,
            models=registry,
            stores=stores,
            serialize=typed_event_bytes,
            retrieval=rag.retrieval,
            rag=rag,
        )
        await app.state.services.start()
        try:
            guard.keys = app.state.services.keys = await _key_ring(settings, stores)
        except BaseException:
            await app.state.services.aclose()
            raise
        # Build /openapi.json off the event loop now, so its first request does not wait.
        warm_openapi = asyncio.create_task(asyncio.to_thread(app.openapi))
        # Then move what start-up built (schemas, the OpenAPI document, imported modules:
        # over 250,000 objects) out of the collector's way: a full collection otherwise
        # walks them all, about 200 ms of CPU at a time under load, and caches that keep
        # objects alive (the conversation histories) make full collections more frequent.
        warm_openapi.add_done_callback(lambda _: gc.freeze())
        try:
            yield
        finally:
            await asyncio.gather(warm_openapi, return_exceptions=True)
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
    for module in (
        models,
        chat,
        embeddings,
        health,
        responses_extra,
        responses,
        responses_ws,
        conversations,
        admin_keys,
        prompts,
        files,
        vector_stores,
    ):
        app.include_router(module.router, prefix="/v1")
    mount_console(app)
    app.include_router(metrics.router)
    app.add_middleware(CreateResponseLane)  # innermost: POST /v1/responses, past FastAPI
    app.add_middleware(TestIdMiddleware)
    app.add_middleware(SecurityMiddleware, guard=guard)
    app.add_middleware(RequestObservabilityMiddleware)  # outermost: sees every response
    return app


def app_from_env() -> FastAPI:
    """The app of one worker of `loom serve --workers N`, built from the config file and
    environment that the parent process set."""
    return build_app(load_settings())
