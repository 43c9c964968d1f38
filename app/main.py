"""The application factory. Nothing heavy happens at import time."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as aioredis
from fastapi import FastAPI

from app.errors import install_error_handlers
from app.job_events import JobEvents
from app.job_queue import JobQueue
from app.metrics import ApiMetrics, install_metrics_middleware
from app.routes import catalog, generations, health, jobs
from app.settings import ApiSettings

DESCRIPTION = """
Diffusion sampling with a configurable reverse process. POST a request to
`/v1/generations`; every knob that shapes the sampling noise (steps, timestep schedule,
deterministic vs stochastic sampling, eta, variance bound and scale, variance type, x0
clipping and dynamic thresholding, classifier-free guidance and its rescale) is a field of
the request. `GET /v1/samplers` says which sampler honours which knob; a knob the chosen
sampler would ignore is refused with a 422 rather than dropped silently.
"""


def create_app(settings: ApiSettings | None = None) -> FastAPI:
    settings = settings or ApiSettings()
    metrics = ApiMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = aioredis.Redis.from_url(
            settings.redis_url,
            decode_responses=True,
            socket_timeout=settings.redis_timeout_s,
            socket_connect_timeout=settings.redis_timeout_s,
            health_check_interval=30,
        )
        # the subscription blocks for messages, so it gets a client without a read timeout
        listener = aioredis.Redis.from_url(
            settings.redis_url, decode_responses=True, socket_connect_timeout=settings.redis_timeout_s
        )
        queue = JobQueue(client, settings.job_ttl_s, settings.models_cache_s)
        events = JobEvents(listener, queue)
        app.state.settings = settings
        app.state.queue = queue
        app.state.events = events
        app.state.metrics = metrics
        await events.start()
        try:
            yield
        finally:
            await events.stop()
            await listener.aclose()
            await client.aclose()

    app = FastAPI(title="Denoising service", version="0.1.0", description=DESCRIPTION, lifespan=lifespan)
    install_error_handlers(app)
    install_metrics_middleware(app, metrics)
    for module in (generations, jobs, catalog, health):
        app.include_router(module.router)
    return app
