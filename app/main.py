"""The application factory. Nothing heavy happens at import time."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aioredis
from fastapi import APIRouter, FastAPI
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from app.access import AccessControl, ApiKeys, RateLimiter, guard
from app.body_limit import BodySizeLimit
from app.docs import install_docs
from app.errors import install_error_handlers
from app.init_image import INIT_IMAGE_PATHS
from app.job_events import JobEvents
from app.job_queue import JobQueue
from app.json_body import StrictJsonBody
from app.metrics import ApiMetrics, install_metrics_middleware
from app.playground import install_playground
from app.prompt_tokens import PromptTokens
from app.routes import catalog, generations, health, jobs, openai_images
from app.settings import ApiSettings
from app.submission import Generations
from app.webhook_sender import WebhookSender
from app.webhooks import RetryPolicy, WebhookDispatcher

DESCRIPTION = """
Diffusion sampling with a configurable reverse process. POST a request to
`/v1/generations`; every knob that shapes the sampling noise (steps, timestep schedule,
deterministic vs stochastic sampling, eta, variance bound and scale, variance type, x0
clipping and dynamic thresholding, classifier-free guidance and its rescale) is a field of
the request. `GET /v1/samplers` says which sampler honours which knob; a knob the chosen
sampler would ignore is refused with a 422 rather than dropped silently.

`POST /v1/images/generations` takes OpenAI's image-generation requests (OpenAI's SDKs work
against it as they are) and runs them the same way, with every knob accepted as an extra field;
`POST /v1/images/edits` takes OpenAI's image edits (a multipart form with the image as a file) and
runs them as img2img from that image.
"""

UNAUTHORIZED: dict[int | str, dict[str, Any]] = {401: {"description": "Missing or invalid API key"}}
RATE_LIMITED: dict[int | str, dict[str, Any]] = {
    429: {"description": "Rate limit reached: retry after the Retry-After header's seconds"}
}


def redis_client(settings: ApiSettings, read_timeout: bool = True) -> aioredis.Redis:
    """A client that fails fast while Redis is away and reconnects by itself when it is back.

    One immediate retry on a connection error replaces a pooled connection that a Redis restart
    closed; a timeout is not retried (redis-py's default would retry ten times, with backoff), so
    an unreachable or hung Redis costs one ``redis_timeout_s``, and the route answers 503.
    """
    return aioredis.Redis.from_url(
        settings.redis_url,
        decode_responses=True,
        encoding_errors="replace",  # bytes that are not UTF-8 fail JSON decoding, never a reader
        socket_timeout=settings.redis_timeout_s if read_timeout else None,
        socket_connect_timeout=settings.redis_timeout_s,
        socket_keepalive=True,
        retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        health_check_interval=30,
    )


def _include(app: FastAPI, router: APIRouter, settings: ApiSettings) -> None:
    """Includes a router route by route: paths in ``open_paths`` skip the key check and rate limit."""
    keys, limited = bool(settings.api_keys), settings.rate_limit_per_s > 0
    dependencies = guard(keys, limited)
    responses = {**(UNAUTHORIZED if keys else {}), **(RATE_LIMITED if limited else {})}
    for route in router.routes:
        single = APIRouter()
        single.routes.append(route)
        if dependencies and getattr(route, "path", None) not in settings.open_paths:
            app.include_router(single, dependencies=dependencies, responses=responses)
        else:
            app.include_router(single)


def _webhook_dispatcher(
    settings: ApiSettings, client: aioredis.Redis, queue: JobQueue, metrics: ApiMetrics
) -> WebhookDispatcher | None:
    """This replica's webhook dispatcher (``app.webhooks``); None where webhooks are off (no secret)."""
    keys = settings.webhook_keys()
    if not keys:
        return None
    return WebhookDispatcher(
        client,
        queue,
        WebhookSender(keys, settings.webhook_allow_private, settings.webhook_timeout_s),
        metrics,
        RetryPolicy(
            max_attempts=settings.webhook_max_attempts,
            backoff_s=settings.webhook_backoff_s,
            backoff_max_s=settings.webhook_backoff_max_s,
        ),
        concurrency=settings.webhook_concurrency,
        lease_s=settings.webhook_lease_s,
    )


def create_app(settings: ApiSettings | None = None) -> FastAPI:
    settings = settings or ApiSettings()
    metrics = ApiMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = redis_client(settings)
        # the subscription blocks for messages, so it gets a client without a read timeout
        listener = redis_client(settings, read_timeout=False)
        queue = JobQueue(
            client,
            settings.job_ttl_s,
            settings.models_cache_s,
            heartbeat_stale_s=settings.heartbeat_stale_s,
            max_queued_jobs=settings.max_queued_jobs,
            queue_full_retry_after_s=settings.queue_full_retry_after_s,
            idempotency_ttl_s=settings.idempotency_ttl_s,
        )
        events = JobEvents(listener, queue)
        keys = ApiKeys([key.get_secret_value() for key in settings.api_keys])
        limiter = RateLimiter(client, settings.rate_limit_per_s, settings.rate_limit_burst)
        app.state.settings = settings
        app.state.queue = queue
        app.state.events = events
        app.state.metrics = metrics
        app.state.prompt_tokens = PromptTokens(queue.client)
        app.state.generations = Generations(settings, queue, events, metrics, app.state.prompt_tokens)
        app.state.access = AccessControl(keys, limiter, metrics)
        dispatcher = _webhook_dispatcher(settings, listener, queue, metrics)
        await events.start()
        if dispatcher is not None:
            await dispatcher.start()
        try:
            yield
        finally:
            if dispatcher is not None:
                await dispatcher.stop()
            await events.stop()
            await listener.aclose()
            await client.aclose()

    app = FastAPI(
        title="Denoising service",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # FastAPI's pages load their assets from a CDN; app.docs serves them itself
        redoc_url=None,
    )
    install_error_handlers(app)
    # the strict JSON check reads the body that the size limit has bounded; both inside the metrics
    # middleware, so that a 413 is counted like any other answer
    app.add_middleware(StrictJsonBody)
    app.add_middleware(
        BodySizeLimit,
        max_bytes=settings.max_body_bytes,
        timeout_s=settings.body_timeout_s,
        drain_bytes=settings.refused_body_drain_bytes,
        on_reject=lambda reason: metrics.rejected.labels(reason).inc(),
        image_paths=INIT_IMAGE_PATHS,
        image_max_bytes=max(settings.max_image_body_bytes, settings.max_body_bytes),
    )
    install_metrics_middleware(app, metrics)
    for module in (generations, openai_images, jobs, catalog, health):
        _include(app, module.router, settings)
    install_docs(app)
    install_playground(app, settings.default_model)
    return app


def release_waiters(app: FastAPI) -> None:
    """On shutdown (from a signal handler): sync requests stop waiting and answer 202 now."""
    events: JobEvents | None = getattr(app.state, "events", None)
    if events is not None:
        events.drain_threadsafe()
