"""GET and DELETE /v1/jobs/{id}: status, progress, result; cancellation."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Header, Path
from fastapi.responses import JSONResponse, StreamingResponse

from app.deps import EventsDep, QueueDep
from app.errors import JobNotFound
from app.event_stream import ENTRY_ID_PATTERN, SSE_MEDIA_TYPE, job_event_stream
from protocol.keys import CancelOutcome
from protocol.schema import JobView

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

JobIdPath = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$", description="job id (32 hex digits)")]


@router.get(
    "/{job_id}",
    response_model=JobView,
    responses={
        404: {"description": "No such job (or expired)"},
        503: {"description": "Redis is unreachable"},
    },
)
async def get_job(job_id: JobIdPath, queue: QueueDep) -> JobView:
    """Status, progress (step k of n) and, once finished, the images and timings of a job."""
    record = await queue.get(job_id)
    if record is None:
        raise JobNotFound(f"job {job_id} not found (finished jobs expire)")
    return JobView.of(record)


@router.get(
    "/{job_id}/events",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {SSE_MEDIA_TYPE: {}},
            "description": "Server-Sent Events: `queued` (queue position), `running` (step k of n, "
            "x̂₀ previews every few steps), then one final `succeeded`/`failed`/`cancelled` event "
            "carrying the job; each `id` resumes the stream as `Last-Event-ID`",
        },
        404: {"description": "No such job"},
    },
)
async def job_events(
    job_id: JobIdPath,
    queue: QueueDep,
    events: EventsDep,
    last_event_id: Annotated[
        str | None,
        Header(
            alias="Last-Event-ID",
            max_length=64,
            description="resume after this event; an id this stream never sent replays it from the start",
        ),
    ] = None,
) -> StreamingResponse:
    """Follow a job live: its events as Server-Sent Events, from any API replica."""
    if await queue.get(job_id) is None:
        raise JobNotFound(f"job {job_id} not found (finished jobs expire)")
    resume = last_event_id if last_event_id and re.fullmatch(ENTRY_ID_PATTERN, last_event_id) else None
    stream = job_event_stream(events.client, queue, job_id, resume)
    return StreamingResponse(
        stream, media_type=SSE_MEDIA_TYPE, headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )


@router.delete(
    "/{job_id}",
    response_model=JobView,
    responses={
        202: {"model": JobView, "description": "Running: it stops within one step"},
        404: {"description": "No such job"},
        409: {"description": "The job had already finished"},
        503: {"description": "Redis is unreachable"},
    },
)
async def cancel_job(job_id: JobIdPath, queue: QueueDep) -> JSONResponse:
    """Cancel a job: a queued job never runs; a running one stops within one denoising step."""
    outcome, final_status = await queue.cancel(job_id)
    if outcome == CancelOutcome.MISSING:
        raise JobNotFound(f"job {job_id} not found (finished jobs expire)")
    record = await queue.get(job_id)
    if record is None:
        raise JobNotFound(f"job {job_id} not found (finished jobs expire)")
    view = JobView.of(record).model_dump(mode="json")
    if outcome == CancelOutcome.CANCELLED:
        return JSONResponse(view, status_code=200)
    if outcome == CancelOutcome.CANCELLING:
        return JSONResponse(view, status_code=202)
    return JSONResponse(
        {"detail": f"job {job_id} already {final_status}; nothing to cancel"}, status_code=409
    )
