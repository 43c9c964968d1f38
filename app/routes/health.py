"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import time

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.exceptions import RedisError

from app.deps import MetricsDep, QueueDep, SettingsDep
from protocol.schema import serving_workers

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Live: the process answers."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "Redis unreachable or no worker ready"}})
async def readyz(queue: QueueDep, settings: SettingsDep) -> JSONResponse:
    """Ready: Redis answers and at least one worker is ready or busy, with a fresh heartbeat."""
    try:
        await queue.client.ping()
        beats = await queue.live_workers()
    except RedisError as error:
        return JSONResponse(
            {"status": "not ready", "reason": f"redis unreachable: {type(error).__name__}: {error}"},
            status_code=503,
        )
    now, stale_s = time.time(), settings.heartbeat_stale_s
    serving = serving_workers(beats, now, stale_s)
    if not serving:
        fresh = [f"{b.worker} {b.state}" for b in beats if now - b.at <= stale_s]
        reason = (
            f"no worker ready: {', '.join(fresh)}"
            if fresh
            else f"no worker heartbeat in the last {stale_s:g} s"
        )
        return JSONResponse({"status": "not ready", "reason": reason}, status_code=503)
    return JSONResponse({"status": "ready", "workers": [b.model_dump(mode="json") for b in serving]})


@router.get("/metrics", include_in_schema=False)
async def metrics(queue: QueueDep, api_metrics: MetricsDep) -> Response:
    """Prometheus exposition of the API's own metrics."""
    try:
        # every registered model, served or not: jobs queued for a model without a worker alert
        for model in (await queue.catalog()).registered:
            api_metrics.queue_depth.labels(model).set(await queue.queue_depth(model))
            api_metrics.queued_jobs.labels(model).set(await queue.queued(model))
    except RedisError:
        pass  # the request counters are still worth scraping while Redis is away
    return Response(generate_latest(api_metrics.registry), media_type=CONTENT_TYPE_LATEST)
