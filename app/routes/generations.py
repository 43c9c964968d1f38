"""POST /v1/generations: validate, enqueue, and (unless asked not to) wait for the images."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Header
from fastapi.responses import JSONResponse

from app.contract import TERMINAL_STATUSES, GenerationRequest, JobView
from app.deps import EventsDep, MetricsDep, QueueDep, SettingsDep
from app.errors import ServiceUnavailable
from app.openapi_examples import GENERATION_EXAMPLES
from app.resolution import resolve_request, resolve_timeout

router = APIRouter(prefix="/v1", tags=["generations"])


def _job_response(view: JobView, status_code: int) -> JSONResponse:
    return JSONResponse(
        view.model_dump(mode="json"), status_code=status_code, headers={"Location": f"/v1/jobs/{view.id}"}
    )


@router.post(
    "/generations",
    response_model=JobView,
    responses={
        202: {"model": JobView, "description": "Accepted; poll the job at the Location header"},
        422: {"description": "A field is out of range, unknown, or not honoured by the chosen sampler"},
        503: {"description": "Redis is unreachable or no worker has registered a model yet"},
    },
)
async def create_generation(
    body: Annotated[GenerationRequest, Body(openapi_examples=GENERATION_EXAMPLES)],
    settings: SettingsDep,
    queue: QueueDep,
    events: EventsDep,
    metrics: MetricsDep,
    prefer: Annotated[str | None, Header(description="`respond-async`: answer 202 at once")] = None,
) -> JSONResponse:
    """Sample images; waits for them up to the sync timeout unless `Prefer: respond-async`."""
    models = await queue.models()
    if not models:
        raise ServiceUnavailable("no worker has registered a model yet; retry shortly")
    config = resolve_request(body, models, settings.default_model, settings.limits())
    timeout_s = resolve_timeout(body.timeout_s, settings.job_timeout_s, settings.max_job_timeout_s)
    record = await queue.submit(config, timeout_s)
    metrics.jobs_submitted.labels(config.model).inc()
    if prefer is not None and "respond-async" in prefer.lower():
        return _job_response(JobView.of(record), 202)
    final = await events.wait_finished(record.id, settings.sync_timeout_s) or record
    return _job_response(JobView.of(final), 200 if final.status in TERMINAL_STATUSES else 202)
