"""POST /v1/generations: validate, enqueue, and (unless asked not to) wait for the images."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Header
from fastapi.responses import JSONResponse, Response, StreamingResponse

from app.deps import CallerDep, EventsDep, GenerationsDep, QueueDep
from app.event_stream import SSE_MEDIA_TYPE, job_event_stream
from app.openapi_examples import GENERATION_EXAMPLES
from app.submission import IdempotencyKeyHeader
from protocol.schema import TERMINAL_STATUSES, GenerationRequest, JobView

router = APIRouter(prefix="/v1", tags=["generations"])


def _job_response(view: JobView, status_code: int, replayed: bool) -> JSONResponse:
    headers = {"Location": f"/v1/jobs/{view.id}"}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return JSONResponse(view.model_dump(mode="json"), status_code=status_code, headers=headers)


@router.post(
    "/generations",
    response_model=JobView,
    responses={
        200: {
            "content": {"application/json": {}, SSE_MEDIA_TYPE: {}},
            "description": "The finished job; with `Accept: text/event-stream`, its events as they "
            "happen (as GET /v1/jobs/{id}/events)",
        },
        202: {"model": JobView, "description": "Accepted; poll the job at the Location header"},
        400: {"description": "The body is not text in a JSON encoding (e.g. invalid UTF-8)"},
        413: {"description": "The request body is larger than this deployment's limit"},
        422: {
            "description": "A field is out of range, unknown, or not honoured by the chosen sampler; "
            "the webhook's host resolves to a private or otherwise forbidden address; "
            "or the Idempotency-Key is malformed or was used with a different request"
        },
        429: {
            "description": "The model's queue is at its cap (or the caller's rate limit is reached); "
            "nothing was enqueued: retry after the Retry-After header's seconds"
        },
        503: {"description": "Redis is unreachable or no worker has registered a model yet"},
    },
)
async def create_generation(
    body: Annotated[GenerationRequest, Body(openapi_examples=GENERATION_EXAMPLES)],
    generations: GenerationsDep,
    caller: CallerDep,
    events: EventsDep,
    queue: QueueDep,
    prefer: Annotated[str | None, Header(description="`respond-async`: answer 202 at once")] = None,
    accept: Annotated[
        str | None, Header(description="`text/event-stream`: stream the job's events (live progress)")
    ] = None,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    """Sample images; waits for them up to the sync timeout unless `Prefer: respond-async`, or
    streams the job's events with `Accept: text/event-stream`."""
    submitted = await generations.submit(body, caller, idempotency_key)
    if accept is not None and SSE_MEDIA_TYPE in accept.lower():
        record = submitted.record
        return StreamingResponse(
            job_event_stream(events.client, queue, record.id, None),
            media_type=SSE_MEDIA_TYPE,
            headers={
                "Location": f"/v1/jobs/{record.id}",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            },
        )
    if prefer is not None and "respond-async" in prefer.lower():
        return _job_response(JobView.of(submitted.record), 202, submitted.replayed)
    final = await generations.wait(submitted.record)
    status_code = 200 if final.status in TERMINAL_STATUSES else 202
    return _job_response(JobView.of(final), status_code, submitted.replayed)
