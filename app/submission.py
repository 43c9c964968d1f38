"""The one path from a GenerationRequest to its job: resolve, check, enqueue, and wait.

``POST /v1/generations`` and the OpenAI-compatible ``POST /v1/images/generations`` both take it,
so a request is resolved, limited, made idempotent and counted the same way whichever route it
came by; each route only translates its own request and response shapes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Annotated

from fastapi import Header

from app.errors import ServiceUnavailable, TooManyRequests
from app.init_image import decode_base64_image, read_init_image
from app.job_events import JobEvents
from app.job_queue import Idempotency, JobQueue
from app.metrics import ApiMetrics
from app.prompt_tokens import PromptTokens
from app.settings import ApiSettings
from app.webhook_targets import TargetError, vetted_address
from protocol.resolution import RequestFieldError, resolve_request, resolve_timeout
from protocol.schema import TERMINAL_STATUSES, GenerationRequest, JobRecord, ModelInfo, WebhookSettings
from protocol.webhooks import resolve_webhook

IDEMPOTENCY_KEY_PATTERN = r"^[\x21-\x7e]{1,128}$"
WEBHOOK_RESOLVE_TIMEOUT_S = 3.0  # a webhook host that does not resolve this fast is a 422

IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        pattern=IDEMPOTENCY_KEY_PATTERN,
        description="1-128 visible ASCII characters. A retry with the same key and body returns "
        "the job the first request created; the same key with another body is refused",
    ),
]


def request_fingerprint(body: GenerationRequest, timeout_s: float) -> str:
    """SHA-256 of the canonical JSON of the validated request (every field, defaults included)."""
    canonical = json.dumps(
        {"request": body.model_dump(mode="json"), "timeout_s": timeout_s},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


async def resolve_webhook_target(body: GenerationRequest, settings: ApiSettings) -> WebhookSettings | None:
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


@dataclass(frozen=True)
class Submitted:
    record: JobRecord  # as enqueued, or as the Idempotency-Key's first request left it
    replayed: bool  # True: the Idempotency-Key had already created this job


class Generations:
    def __init__(
        self,
        settings: ApiSettings,
        queue: JobQueue,
        events: JobEvents,
        metrics: ApiMetrics,
        prompt_tokens: PromptTokens,
    ) -> None:
        self.settings = settings
        self.queue = queue
        self.events = events
        self.metrics = metrics
        self.prompt_tokens = prompt_tokens

    async def models(self, requested: str | None = None) -> dict[str, ModelInfo]:
        """The models a request may name (an unknown name is then a 422 listing them).

        Raises:
            ServiceUnavailable: ``requested`` (default: the default model) is registered but no
                live worker serves it, or no worker serves any model yet; nothing is enqueued.
        """
        settings = self.settings
        catalog = await self.queue.catalog()
        models = catalog.offered(settings.require_live_worker)
        name = requested or settings.default_model
        retry_after_s = settings.no_worker_retry_after_s
        if name in catalog.registered and name not in models:
            self.metrics.rejected.labels("no_worker").inc()
            raise ServiceUnavailable(
                f"model {name!r} has no live worker (none serving it has sent a heartbeat in the last "
                f"{settings.heartbeat_stale_s:g} s); nothing was enqueued, retry later",
                retry_after_s,
            )
        if not models:
            self.metrics.rejected.labels("no_worker").inc()
            raise ServiceUnavailable(
                "no live worker serves any model yet; nothing was enqueued", retry_after_s
            )
        return models

    async def submit(
        self, request: GenerationRequest, caller: str, idempotency_key: str | None = None
    ) -> Submitted:
        """Resolves the request against the models and this deployment's limits, checks its prompt
        lengths and enqueues it, or finds the job that the caller's Idempotency-Key already made.

        Raises:
            RequestFieldError: a field cannot be honoured (named).
            ServiceUnavailable: no model is registered.
            TooManyRequests: the model's queue is at its cap (counted as ``queue_full``).
            IdempotencyKeyReused: the key made a job for another request.
        """
        models = await self.models(request.model)
        settings = self.settings
        image, header = None, None
        if request.init_image is not None:
            image = decode_base64_image(request.init_image, settings.max_init_image_bytes)
            header = read_init_image(image, settings.max_init_image_bytes)
        config = resolve_request(request, models, settings.default_model, settings.limits(), header)
        await self.prompt_tokens.check(config, models[config.model])
        timeout_s = resolve_timeout(request.timeout_s, settings.job_timeout_s, settings.max_job_timeout_s)
        webhook = await resolve_webhook_target(request, settings)
        idempotency = None
        if idempotency_key is not None:
            idempotency = Idempotency(caller, idempotency_key, request_fingerprint(request, timeout_s))
        try:
            submission = await self.queue.submit(config, timeout_s, idempotency, webhook, image)
        except TooManyRequests:
            self.metrics.rejected.labels("queue_full").inc()
            raise
        if submission.queued is not None:
            self.metrics.jobs_submitted.labels(config.model).inc()
            self.metrics.queued_jobs.labels(config.model).set(submission.queued)
        return Submitted(submission.record, submission.replayed)

    async def wait(self, record: JobRecord) -> JobRecord:
        """The job's record once it has finished, else its latest after the sync timeout (or sooner,
        when the API is shutting down)."""
        if record.status in TERMINAL_STATUSES:
            return record
        return await self.events.wait_finished(record.id, self.settings.sync_timeout_s, record)
