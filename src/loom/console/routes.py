"""Serve the console's pages and assets. The pages carry no data, so they are public; the
data comes from `/v1` with the user's own key, fetched by the page's script."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

HERE = Path(__file__).parent
PREFIX = "/console"
# Page name -> title; each page is the shared shell plus `static/<name>.js`.
PAGES = {
    "responses": "Responses",
    "response": "Response",
    "conversations": "Conversations",
    "conversation": "Conversation",
    "playground": "Playground",
    "files": "Files and vector stores",
    "live": "Live view",
}
# Nothing on a page may come from another host: scripts, styles, images, fetches.
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
_HEADERS = {"content-security-policy": _CSP, "cache-control": "no-cache"}


@cache
def page_html(name: str) -> str:
    shell = (HERE / "templates" / "shell.html").read_text(encoding="utf-8")
    return shell.replace("{{title}}", PAGES[name]).replace("{{page}}", name)


def _page(name: str) -> HTMLResponse:
    return HTMLResponse(page_html(name), headers=_HEADERS)


router = APIRouter(prefix=PREFIX, include_in_schema=False)


@router.get("")
async def console_home() -> RedirectResponse:
    return RedirectResponse(f"{PREFIX}/responses", status_code=307)


@router.get("/responses")
async def responses_page() -> HTMLResponse:
    return _page("responses")


@router.get("/responses/{response_id}")
async def response_page(response_id: str) -> HTMLResponse:
    return _page("response")


@router.get("/conversations")
async def conversations_page() -> HTMLResponse:
    return _page("conversations")


@router.get("/conversations/{conversation_id}")
async def conversation_page(conversation_id: str) -> HTMLResponse:
    return _page("conversation")


@router.get("/playground")
async def playground_page() -> HTMLResponse:
    return _page("playground")


@router.get("/files")
async def files_page() -> HTMLResponse:
    return _page("files")


@router.get("/live")
async def live_page() -> HTMLResponse:
    return _page("live")


def mount_console(app: FastAPI) -> None:
    app.include_router(router)
    app.mount(f"{PREFIX}/static", StaticFiles(directory=HERE / "static"), name="console-static")
