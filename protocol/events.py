"""A job's life as a sequence of events, for live progress (Server-Sent Events on
``GET /v1/jobs/{id}/events``), webhooks and the client's progress bar.

Events travel through Redis (``protocol.keys.job_events_key``: one stream per job), so any API
replica can serve them and a reader that reconnects resumes after the last id it saw (SSE's
``Last-Event-ID`` is the stream entry id). On the wire an event is::

    id: <stream entry id>
    event: <JobEvent.type>
    data: <JobEvent JSON>

``queued`` is written by the API at submission (with the queue position), ``running`` by the
worker at its progress writes (step k of n, and every few steps a small preview PNG of the
predicted x̂₀), and exactly one final event (``succeeded``, ``failed`` or ``cancelled``) when the
job ends, carrying the same body as ``GET /v1/jobs/{id}``.

Both sides append through ``append_event_call`` and the ``APPEND_EVENT`` script, which also
writes a webhook delivery request when the job's webhook wants the event (``protocol.webhooks``):
the worker's step loop makes no extra round trip for webhooks.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from protocol.keys import JOB_EVENT_FIELD, WEBHOOKS_STREAM, job_events_key, job_key, webhook_state_key
from protocol.schema import JobError, JobView

JobEventType = Literal["queued", "running", "succeeded", "failed", "cancelled"]
FINAL_EVENT_TYPES: frozenset[JobEventType] = frozenset({"succeeded", "failed", "cancelled"})
JOB_EVENTS_MAXLEN = 512  # entries kept per job (running events come every progress interval)


class JobEvent(BaseModel):
    type: JobEventType
    job_id: str
    at: float = Field(description="epoch seconds")
    queue_position: int | None = Field(None, description="queued: jobs of the model ahead of it, + 1")
    step: int | None = Field(None, description="running: denoising steps done")
    total: int | None = Field(None, description="running: denoising steps in all")
    preview_png_base64: str | None = Field(
        None, description="running: the predicted x̂₀ of image 0 as a small PNG (every few steps)"
    )
    job: JobView | None = Field(None, description="final events: the job as GET /v1/jobs/{id} returns it")
    error: JobError | None = None

    @property
    def final(self) -> bool:
        return self.type in FINAL_EVENT_TYPES


def event_from_fields(fields: dict[str, str]) -> JobEvent:
    """The event of a job-events stream entry."""
    return JobEvent.model_validate_json(fields[JOB_EVENT_FIELD])


def append_event_call(event: JobEvent, ttl_s: int) -> tuple[list[str], list[str | int]]:
    """The keys and arguments of ``protocol.job_scripts.APPEND_EVENT`` for ``event``; ``ttl_s``
    is the job record's (the events and the webhook state expire with it)."""
    keys = [
        job_events_key(event.job_id),
        job_key(event.job_id),
        WEBHOOKS_STREAM,
        webhook_state_key(event.job_id),
    ]
    args: list[str | int] = [
        event.model_dump_json(exclude_none=True),
        ttl_s,
        JOB_EVENTS_MAXLEN,
        event.type,
        repr(event.at),
    ]
    return keys, args
