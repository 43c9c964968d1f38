"""GET and DELETE /v1/jobs/{id}: status, progress, result; cancellation."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.responses import JSONResponse

from app.deps import QueueDep
from app.errors import JobNotFound
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
