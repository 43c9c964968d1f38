"""Webhooks as data: a request's webhook settings, the delivery requests that ``APPEND_EVENT``
writes beside a job's events, and the delivery the API's dispatcher sends (``app.webhooks``).

A job's webhook receives some of its events (``protocol.events``) as Standard Webhooks
(https://www.standardwebhooks.com): a JSON body ``{"type", "timestamp", "data"}`` POSTed with the
``webhook-id``, ``webhook-timestamp`` and ``webhook-signature`` headers. The event names a
request chooses and the types its receiver sees:

============  ===============  ===========================================================
request       body ``type``     from the job event, and ``data``
============  ===============  ===========================================================
start         job.started      its first ``running`` event: ``{"id", "step", "total"}``
progress      job.progress     a later ``running`` event (throttled): ``{"id", "step", "total"}``
completed     job.completed    its final event: the job as ``GET /v1/jobs/{id}`` returns it
============  ===============  ===========================================================
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from protocol.events import JobEvent
from protocol.keys import JOB_EVENT_FIELD, WEBHOOK_EVENT_ID_FIELD, WEBHOOK_FIELD, WEBHOOK_KIND_FIELD
from protocol.resolution import RequestFieldError
from protocol.schema import DEFAULT_WEBHOOK_EVENTS, GenerationRequest, WebhookEventName, WebhookSettings

WebhookType = Literal["job.started", "job.progress", "job.completed"]
WEBHOOK_TYPES: dict[WebhookEventName, WebhookType] = {
    "start": "job.started",
    "progress": "job.progress",
    "completed": "job.completed",
}


def resolve_webhook(request: GenerationRequest, progress_interval_s: float) -> WebhookSettings | None:
    """The webhook settings a request asks for (None: no webhook).

    Raises:
        RequestFieldError: ``webhook_events`` without a ``webhook`` (it would be ignored).
    """
    if request.webhook is None:
        if request.webhook_events is not None:
            raise RequestFieldError(
                "webhook_events", "webhook_events is set but webhook is not: give the URL to deliver to"
            )
        return None
    events = list(dict.fromkeys(request.webhook_events or DEFAULT_WEBHOOK_EVENTS))
    return WebhookSettings(url=str(request.webhook), events=events, progress_interval_s=progress_interval_s)


class DeliveryRequest(BaseModel):
    """An entry of the webhooks stream (``protocol.keys.WEBHOOKS_STREAM``): one event to deliver."""

    kind: WebhookEventName
    event_id: str = Field(description="the event's entry id in the job's events stream")
    event: JobEvent
    webhook: WebhookSettings

    @classmethod
    def from_fields(cls, fields: dict[str, str]) -> DeliveryRequest:
        """The request of a stream entry's fields.

        Raises:
            ValueError: a field is missing or is not what the contract says (a malformed entry).
        """
        try:
            return cls(
                kind=fields[WEBHOOK_KIND_FIELD],  # type: ignore[arg-type]
                event_id=fields[WEBHOOK_EVENT_ID_FIELD],
                event=JobEvent.model_validate_json(fields[JOB_EVENT_FIELD]),
                webhook=WebhookSettings.model_validate_json(fields[WEBHOOK_FIELD]),
            )
        except KeyError as missing:
            raise ValueError(f"delivery request without its {missing} field") from missing

    @property
    def webhook_id(self) -> str:
        """The ``webhook-id``: the same for every attempt, so a receiver can drop duplicates. The
        event id makes it unique (a stream entry id has no ``.``, which the signature forbids)."""
        return f"msg_{self.event.job_id}_{self.event_id}"


class WebhookDelivery(BaseModel):
    """One delivery, its body fixed at the first attempt; a member of the retry schedule
    (``protocol.keys.WEBHOOK_RETRIES_KEY``) between attempts."""

    id: str = Field(description="the webhook-id header")
    job_id: str
    url: str
    type: WebhookType
    body: str = Field(description="the exact bytes (UTF-8) every attempt sends and signs")
    event_at: float = Field(description="epoch seconds of the event")
    attempts: int = Field(0, description="attempts made so far")
    last_error: str | None = None


def payload(kind: WebhookEventName, event: JobEvent, job: dict[str, Any] | None) -> str:
    """The body: ``type``, ``timestamp`` (the event's, ISO 8601 UTC) and ``data`` (see the module
    doc; ``job`` is the JobView JSON of a completed job, None when its record has expired)."""
    data: dict[str, Any]
    if kind == "completed":
        data = job if job is not None else {"id": event.job_id, "status": event.type}
    else:
        data = {"id": event.job_id, "step": event.step, "total": event.total}
    timestamp = datetime.fromtimestamp(event.at, UTC).isoformat().replace("+00:00", "Z")
    body = {"type": WEBHOOK_TYPES[kind], "timestamp": timestamp, "data": data}
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


def delivery_of(request: DeliveryRequest, job: dict[str, Any] | None) -> WebhookDelivery:
    """The delivery of a request, before its first attempt."""
    return WebhookDelivery(
        id=request.webhook_id,
        job_id=request.event.job_id,
        url=request.webhook.url,
        type=WEBHOOK_TYPES[request.kind],
        body=payload(request.kind, request.event, job),
        event_at=request.event.at,
    )
