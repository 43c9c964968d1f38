"""POST /v1/generations: validate, enqueue, and (unless asked not to) wait for the images."""

from __future__ import annotations

import hashlib
import json
from typing import Annotated

from fastapi import APIRouter, Body, Header
from fastapi.responses import JSONResponse

from app.deps import CallerDep, EventsDep, MetricsDep, PromptTokensDep, QueueDep, SettingsDep
from app.errors import ServiceUnavailable, TooManyRequests
from app.job_queue import Idempotency, JobQueue
from app.metrics import ApiMetrics
from app.openapi_examples import GENERATION_EXAMPLES
from app.settings import ApiSettings
from app.webhook_targets import TargetError, vetted_address
from protocol.resolution import RequestFieldError, resolve_request, resolve_timeout
from protocol.schema import TERMINAL_STATUSES, GenerationRequest, JobView, ModelInfo, WebhookSettings
from protocol.webhooks import resolve_webhook

router = APIRouter(prefix="/v1", tags=["generations"])

IDEMPOTENCY_KEY_PATTERN = r"^[\x21-\x7e]{1,128}$"
WEBHOOK_RESOLVE_TIMEOUT_S = 3.0  # a webhook host that does not resolve this fast is a 422


def _job_response(view: JobView, status_code: int, replayed: bool) -> JSONResponse:
    headers = {"Location": f"/v1/jobs/{view.id}"}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return JSONResponse(view.model_dump(mode="json"), status_code=status_code, headers=headers)


def request_fingerprint(body: GenerationRequest, timeout_s: float) -> str:
    """SHA-256 of the canonical JSON of the validated request (every field, defaults included)."""
    canonical = json.dumps(
        {"request": body.model_dump(mode="json"), "timeout_s": timeout_s},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


async def _offered_models(
    body: GenerationRequest, settings: ApiSettings, queue: JobQueue, metrics: ApiMetrics
) -> dict[str, ModelInfo]:
    """The models the request may name (an unknown name is then a 422 listing them).

    Raises:
        ServiceUnavailable: the model is registered but no live worker serves it, or no worker
            serves any model yet; nothing is enqueued.
    """
    catalog = await queue.catalog()
    models = catalog.offered(settings.require_live_worker)
    name = body.model or settings.default_model
    retry_after_s = settings.no_worker_retry_after_s
    if name in catalog.registered and name not in models:
        metrics.rejected.labels("no_worker").inc()
        raise ServiceUnavailable(
            f"model {name!r} has no live worker (none serving it has sent a heartbeat in the last "
            f"{settings.heartbeat_stale_s:g} s); nothing was enqueued, retry later",
            retry_after_s,
        )
    if not models:
        metrics.rejected.labels("no_worker").inc()
        raise ServiceUnavailable("no live worker serves any model yet; nothing was enqueued", retry_after_s)
    return models


async def _webhook(body: GenerationRequest, settings: ApiSettings) -> WebhookSettings | None:
    """The request's webhook settings, once its target is allowed (see ``app.webhook_targets``).

    Raises:
        RequestFieldError: webhooks are off here, or the host does not resolve or resolves to an
            address webhooks may not reach (a 422 naming ``webhook``); nothing is enqueued.
    """
    webhook = resolve_webhook(body, settings.webhook_progress_interval_s)
    if webhook is None:
        return None
    if not settings.webhook_secret:
        raise RequestFieldError(
            "webhook", "webhooks are off on this deployment: no signing secret (DENOISE_WEBHOOK_SECRET)"
        )
    try:
        await vetted_address(webhook.url, settings.webhook_allow_private, WEBHOOK_RESOLVE_TIMEOUT_S)
    except TargetError as error:
        raise RequestFieldError("webhook", str(error)) from error
    return webhook


@router.post(
    "/generations",
    response_model=JobView,
    responses={
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
        503: {
            "description": "Redis is unreachable, or no live worker serves the model (the detail names "
            "it); nothing was enqueued: retry after the Retry-After header's seconds"
        },
    },
)
async def create_generation(
    body: Annotated[GenerationRequest, Body(openapi_examples=GENERATION_EXAMPLES)],
    settings: SettingsDep,
    queue: QueueDep,
    events: EventsDep,
    metrics: MetricsDep,
    caller: CallerDep,
    prompt_tokens: PromptTokensDep,
    prefer: Annotated[str | None, Header(description="`respond-async`: answer 202 at once")] = None,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            pattern=IDEMPOTENCY_KEY_PATTERN,
            description="1-128 visible ASCII characters. A retry with the same key and body returns "
            "the job the first request created (sync or async as asked); the same key with "
            "another body is a 422",
        ),
    ] = None,
) -> JSONResponse:
    """Sample images; waits for them up to the sync timeout unless `Prefer: respond-async`."""
    models = await _offered_models(body, settings, queue, metrics)
    config = resolve_request(body, models, settings.default_model, settings.limits())
    await prompt_tokens.check(config, models[config.model])
    timeout_s = resolve_timeout(body.timeout_s, settings.job_timeout_s, settings.max_job_timeout_s)
    webhook = await _webhook(body, settings)
    idempotency = None
    if idempotency_key is not None:
        idempotency = Idempotency(caller, idempotency_key, request_fingerprint(body, timeout_s))
    try:
        submission = await queue.submit(config, timeout_s, idempotency, webhook)
    except TooManyRequests:
        metrics.rejected.labels("queue_full").inc()
        raise
    record = submission.record
    if submission.queued is not None:
        metrics.jobs_submitted.labels(config.model).inc()
        metrics.queued_jobs.labels(config.model).set(submission.queued)
    if prefer is not None and "respond-async" in prefer.lower():
        return _job_response(JobView.of(record), 202, submission.replayed)
    final = record
    if record.status not in TERMINAL_STATUSES:
        final = await events.wait_finished(record.id, settings.sync_timeout_s, record)
    status_code = 200 if final.status in TERMINAL_STATUSES else 202
    return _job_response(JobView.of(final), status_code, submission.replayed)
