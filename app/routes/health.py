"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import time

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.exceptions import RedisError

from app.deps import MetricsDep, QueueDep, SettingsDep

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Live: the process answers."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "Redis unreachable or no fresh worker heartbeat"}})
async def readyz(queue: QueueDep, settings: SettingsDep) -> JSONResponse:
    """Ready: Redis answers and at least one worker's heartbeat is fresh."""
    try:
        await queue.client.ping()
        beats = await queue.live_workers()
    except RedisError as error:
        return JSONResponse(
            {"status": "not ready", "reason": f"redis unreachable: {type(error).__name__}: {error}"},
            status_code=503,
        )
    now = time.time()
    fresh = [b for b in beats if now - b.at <= settings.heartbeat_stale_s]
    if not fresh:
        return JSONResponse(
            {
                "status": "not ready",
                "reason": f"no worker heartbeat in the last {settings.heartbeat_stale_s:g} s",
            },
            status_code=503,
        )
    return JSONResponse({"status": "ready", "workers": [b.model_dump() for b in fresh]})


@router.get("/metrics", include_in_schema=False)
async def metrics(queue: QueueDep, api_metrics: MetricsDep) -> Response:
    """Prometheus exposition of the API's own metrics."""
    try:
        for model in await queue.models():
            api_metrics.queue_depth.labels(model).set(await queue.queue_depth(model))
            api_metrics.queued_jobs.labels(model).set(await queue.queued(model))
    except RedisError:
        pass  # the request counters are still worth scraping while Redis is away
    return Response(generate_latest(api_metrics.registry), media_type=CONTENT_TYPE_LATEST)
