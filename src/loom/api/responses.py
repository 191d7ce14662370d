"""`/v1/responses`: create (JSON or SSE from one code path), retrieve, list, delete, inputs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from openai.types.responses import Response, ResponseItemList
from openai.types.responses.response_create_params import ResponseCreateParamsBase

from loom.api.body import parse_body
from loom.api.deps import owner, services
from loom.api.includes import includes
from loom.api.json import OrjsonResponse
from loom.api.openapi_docs import STREAM_PROPERTY, Deleted, ListPage, answers, sdk_body
from loom.api.pages import page_of
from loom.api.sse import sse_response, turn_stream_response, typed_event_bytes
from loom.engine.events import Event
from loom.engine.loop import run_turn
from loom.engine.request import CreateResponse
from loom.engine.resume import current, follow, wait_done
from loom.engine.settle import end_cancelled_in
from loom.engine.turn_runner import Persist, turn_saver
from loom.engine.turn_setup import PreparedTurn, prepare_turn
from loom.engine.warmup import warmup_turn
from loom.errors import InvalidRequestError, NotFoundError, UpstreamTimeoutError
from loom.observability.turns import TurnObservation
from loom.services import Services
from loom.tools.file_search import present_items

router = APIRouter()


def _present(response: dict[str, Any], include: list[str] | None) -> dict[str, Any]:
    """The Response as the client sees it: file search results only when included."""
    output = response.get("output") or []
    shown = present_items(output, include)
    return response if shown is output else {**response, "output": shown}


def _persister(svc: Services, who: str, prepared: PreparedTurn, req: CreateResponse) -> Persist:
    """Save the turn (engine.turn_runner.turn_saver), then show file search results only
    if `include` asked for them: the stored turn keeps them, as a later turn's model
    reads them."""
    save = turn_saver(svc.stores, who, prepared, req.store)

    async def persist(response: dict[str, Any]) -> None:
        await save(response)
        response["output"] = present_items(response["output"], req.include)

    return persist


async def begin_turn(
    svc: Services,
    who: str,
    req: CreateResponse,
    *,
    history: list[dict[str, Any]] | None = None,
    generate: bool = True,
) -> tuple[PreparedTurn, AsyncIterator[Event], Persist]:
    """Set a turn up: its events (not started yet) and how it is saved. Shared by HTTP
    and WebSocket, so both run the same turn the same way."""
    prepared = await prepare_turn(
        req,
        owner=who,
        settings=svc.settings,
        models=svc.models,
        stores=svc.stores,
        searcher=svc.retrieval,
        url_policy=svc.url_policy,
        history=history,
    )
    persist = _persister(svc, who, prepared, req)
    events = run_turn(prepared.turn) if generate else warmup_turn(prepared.turn)
    return prepared, events, persist


@router.post(
    "/responses",
    openapi_extra=sdk_body(
        ResponseCreateParamsBase, required=("model", "input"), stream=STREAM_PROPERTY
    ),
    responses=answers(Response, errors=(400, 404, 409), upstream=True, stream=True),
)
async def create_response(
    request: Request, svc: Services = Depends(services), who: str = Depends(owner)
):
    req, body = await parse_body(request, CreateResponse)
    if req.background:  # `events` is never started: the background runner runs the turn
        prepared, _, _ = await begin_turn(svc, who, req)
        # A replica that is shutting down queues the work for another one.
        run = await svc.background.start(
            prepared, who, body, claim=not svc.replica.draining, streamed=bool(req.stream)
        )
        if req.stream:
            return turn_stream_response(run.frames_from(0))
        return OrjsonResponse({**prepared.turn.response, "status": "queued", "output": []})
    admission = svc.turns.admit()  # a 429 at once when this process is full
    try:
        prepared, events, persist = await begin_turn(svc, who, req)
    except BaseException:
        admission.release()
        raise
    # Metrics and the trace span of the turn (the events have not started yet).
    observed = TurnObservation(prepared.turn.response["id"], req.model)
    prepared.turn.trace = observed.trace
    persist = observed.saving(persist)
    try:
        if req.stream:
            frames = await svc.turns.stream(events, persist, typed_event_bytes, admission)
            return turn_stream_response(frames)
        final = await svc.turns.run(events, persist, admission)
    except BaseException as exc:
        admission.release()  # if the runner has not already
        observed.refused(exc)  # nothing if the turn was stored: then it was counted
        raise
    error = final.get("error") or {}
    if error.get("code") == "upstream_timeout":  # kept as failed; the caller gets a 504
        raise UpstreamTimeoutError(f"{error['message']} (response {final['id']} failed)")
    return OrjsonResponse(final)


def _not_found(response_id: str) -> NotFoundError:
    return NotFoundError(f"Response with id '{response_id}' not found.", param="response_id")


@router.get("/responses/{response_id}", responses=answers(Response))
async def get_response(
    response_id: str,
    include: list[str] = Depends(includes),
    stream: bool = False,
    starting_after: int | None = Query(None, ge=0),
    svc: Services = Depends(services),
    who: str = Depends(owner),
):
    """The response as it stands; with `stream=true`, a background response's events
    after `starting_after` (from the start without it), then live ones to the end."""
    stored = await svc.stores.responses.get(who, response_id)
    if stored is None:
        raise _not_found(response_id)
    response = stored["response"]
    if stream:
        if not response.get("background"):
            raise InvalidRequestError(
                "This response cannot be streamed because it was not created with "
                "background=true.",  # OpenAI's words
                param="stream",
            )
        after = -1 if starting_after is None else starting_after
        interval = svc.settings.follow_poll_interval
        events = follow(
            svc.stores.background, svc.hub, svc.serialize, who, response_id, after, interval
        )
        return sse_response(events)
    return _present(await current(svc.stores.background, who, response), include)


@router.post("/responses/{response_id}/cancel")
async def cancel_response(
    response_id: str, svc: Services = Depends(services), who: str = Depends(owner)
):
    """Cancel a background response on whichever replica runs it; a response that has
    already ended is returned as it is."""
    stored = await svc.stores.responses.get(who, response_id)
    if stored is None:
        raise _not_found(response_id)
    if not stored["response"].get("background"):
        raise InvalidRequestError("Cannot cancel a synchronous response.", param="response_id")

    async def end_queued(conn, queued_id: str) -> None:
        await end_cancelled_in(conn, queued_id, svc.serialize)

    job = await svc.stores.background.request_cancel(who, response_id, end_queued)
    if job is not None and job["state"] == "running":
        svc.background.stop(response_id, "cancel")
        background = svc.stores.background
        ended = await wait_done(background, svc.hub, who, response_id, timeout=10)
        if not ended:  # its replica is gone: the flag is durable, it settles as cancelled
            return {**stored["response"], "status": "cancelled"}
    stored = await svc.stores.responses.get(who, response_id)
    if stored is None:
        raise _not_found(response_id)
    return _present(stored["response"], None)


@router.delete("/responses/{response_id}", responses=answers(Deleted))
async def delete_response(
    response_id: str, svc: Services = Depends(services), who: str = Depends(owner)
):
    if not await svc.stores.responses.delete(who, response_id):
        raise _not_found(response_id)
    return {"id": response_id, "object": "response.deleted", "deleted": True}


@router.get("/responses", responses=answers(ListPage[Response], errors=(400,)))
async def list_responses(
    after: str | None = None,
    limit: int = Query(20, ge=1, le=100),
    order: Literal["asc", "desc"] = "desc",
    status: str | None = Query(None, max_length=64),
    model: str | None = Query(None, max_length=256),
    svc: Services = Depends(services),
    who: str = Depends(owner),
):
    rows, has_more = await svc.stores.responses.list(
        who, after=after, limit=limit, order=order, status=status, model=model
    )
    # A running background response shows its output so far, as on retrieve.
    rows = [await current(svc.stores.background, who, row) for row in rows]
    return page_of(rows, has_more)


@router.get("/responses/{response_id}/input_items", responses=answers(ResponseItemList))
async def list_input_items(
    response_id: str,
    after: str | None = None,
    before: str | None = None,
    limit: int = Query(20, ge=1, le=100),
    order: Literal["asc", "desc"] = "desc",
    include: list[str] = Depends(includes),
    svc: Services = Depends(services),
    who: str = Depends(owner),
):
    stored = await svc.stores.responses.get(who, response_id)
    if stored is None:
        raise _not_found(response_id)
    items = present_items(stored["input_items"], include)
    if order == "desc":
        items = list(reversed(items))
    ids = [item.get("id") for item in items]
    if after is not None:
        items = items[ids.index(after) + 1 :] if after in ids else []
        ids = [item.get("id") for item in items]
    if before is not None:
        items = items[: ids.index(before)] if before in ids else items
    return page_of(items[:limit], len(items) > limit)
