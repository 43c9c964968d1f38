"""Every Redis name the service uses, spelled once: keys, stream fields, job-hash fields and flag
values. The Python on both sides and the Lua scripts (``protocol.job_scripts``) read them here.

Each key function documents the Redis type it names and what holds for it.
"""

from __future__ import annotations

import json
from enum import StrEnum

KEY_PREFIX = "denoise"
CONSUMER_GROUP = "workers"
MODELS_KEY = f"{KEY_PREFIX}:models"  # hash: model name -> ModelInfo JSON
EVENTS_CHANNEL = f"{KEY_PREFIX}:events"  # pub/sub: job ids whose record changed state
JOB_ID_PATTERN = r"^[0-9a-f]{32}$"

# ---------------------------------------------------------------- the job stream's entries
STREAM_JOB_FIELD = "job"  # an entry of a job stream has exactly this one field: the job id
JOB_EVENT_FIELD = "event"  # an entry of a job-events stream has this one field: the JobEvent JSON

# ------------------------------------------------------------------- the job hash's fields
# Each field of a job hash holds one JSON value (``protocol.records``); the names are
# ``JobRecord``'s fields (a test checks it), plus QUEUED_SET_FIELD, which the scripts alone use.
STATUS_FIELD = "status"
ATTEMPTS_FIELD = "attempts"
WORKER_FIELD = "worker"
STARTED_AT_FIELD = "started_at"
FINISHED_AT_FIELD = "finished_at"
PROGRESS_FIELD = "progress"
RESULT_FIELD = "result"
ERROR_FIELD = "error"
CANCEL_REQUESTED_FIELD = "cancel_requested"
WEBHOOK_FIELD = "webhook"  # JSON: the job's WebhookSettings, or null
QUEUED_SET_FIELD = "queued_set"  # JSON string: the job's queued_jobs_key
CANCEL_REQUESTED = json.dumps(True)  # the value of CANCEL_REQUESTED_FIELD once a client cancelled


# ------------------------------------------------------------------------------ webhooks
WEBHOOKS_STREAM = f"{KEY_PREFIX}:webhooks"  # stream of delivery requests (see WEBHOOK_ENTRY_FIELDS)
WEBHOOK_SENDERS_GROUP = "webhook-senders"  # its consumer group: the API replicas' dispatchers
WEBHOOK_RETRIES_KEY = f"{KEY_PREFIX}:webhook-retries"  # sorted set: WebhookDelivery JSON, score: due
WEBHOOK_DEAD_LETTERS_KEY = f"{KEY_PREFIX}:webhooks:dead"  # stream of deliveries that were given up
# An entry of WEBHOOKS_STREAM (written by APPEND_EVENT, beside the job's event) has four fields:
WEBHOOK_KIND_FIELD = "kind"  # start, progress or completed (a WebhookEventName)
WEBHOOK_EVENT_ID_FIELD = "event_id"  # the event's entry id in the job's events stream
# ... JOB_EVENT_FIELD (the JobEvent JSON) and WEBHOOK_FIELD (the job's WebhookSettings JSON).
WEBHOOK_ENTRY_FIELDS = (WEBHOOK_KIND_FIELD, WEBHOOK_EVENT_ID_FIELD, JOB_EVENT_FIELD, WEBHOOK_FIELD)
# The fields of a job's webhook state hash (``webhook_state_key``), which APPEND_EVENT alone uses.
WEBHOOK_STARTED = "started"  # set once the job's first running event was seen
WEBHOOK_SENT_AT = "sent_at"  # epoch s of the last start or progress delivery request (the throttle)


# ---------------------------------------------------------- what the job scripts answer
class SubmitOutcome(StrEnum):
    """The first element of SUBMIT's answer."""

    CREATED = "created"
    REPLAY = "replay"  # the Idempotency-Key had created this job already
    CONFLICT = "conflict"  # the key was used with another request
    FULL = "full"  # the model's queue is at its cap; nothing was stored


class CancelOutcome(StrEnum):
    """CANCEL's answer (ALREADY is followed by ``:`` and the final status, JSON-encoded)."""

    CANCELLED = "cancelled"  # it was queued: it will never run
    CANCELLING = "cancelling"  # it is running: its worker stops it within one step
    MISSING = "missing"
    ALREADY = "already"


def jobs_stream_key(model: str) -> str:
    """Stream of job ids waiting for a worker that serves ``model`` (field ``STREAM_JOB_FIELD``)."""
    return f"{KEY_PREFIX}:jobs:{model}"


def job_key(job_id: str) -> str:
    """Hash holding the job record (see ``JobRecord``); one JSON value per field."""
    return f"{KEY_PREFIX}:job:{job_id}"


def worker_heartbeat_key(worker: str) -> str:
    """String with a TTL, refreshed by a live worker; its value is a WorkerHeartbeat JSON."""
    return f"{KEY_PREFIX}:worker:{worker}"


WORKER_HEARTBEAT_PATTERN = worker_heartbeat_key("*")


def queued_jobs_key(model: str) -> str:
    """Sorted set of the job hashes of ``model`` still queued (score: submission time).

    Its size is the exact count that back-pressure caps: the submit script adds a job, and every
    script that moves a job out of ``queued`` (start, cancel, finish) removes it. Each job hash
    names its set in the ``QUEUED_SET_FIELD`` field, so the scripts need no key name of their own.
    """
    return f"{KEY_PREFIX}:queued:{model}"


def idempotency_key(principal: str, key: str) -> str:
    """String with a TTL: the job an ``Idempotency-Key`` created, scoped to the caller."""
    return f"{KEY_PREFIX}:idempotency:{principal}:{key}"


def rate_limit_key(principal: str) -> str:
    """Hash holding one caller's token bucket (tokens, last refill time)."""
    return f"{KEY_PREFIX}:ratelimit:{principal}"


def dead_letter_stream_key(model: str) -> str:
    """Stream of entries of ``model``'s job stream that no worker could run (poison, corrupt)."""
    return f"{KEY_PREFIX}:dead:{model}"


def tokenizer_key(model: str) -> str:
    """String: a prompt model's tokenizer in the ``tokenizers`` JSON format, written by its workers
    so that the API counts prompt tokens exactly (a prompt over the limit is a 422, not a failed
    job)."""
    return f"{KEY_PREFIX}:tokenizer:{model}"


def job_events_key(job_id: str) -> str:
    """Stream of a job's ``JobEvent``s (one field, ``EVENT_FIELD``), capped in length and expiring
    with the job's record; its entry ids are the SSE event ids."""
    return f"{KEY_PREFIX}:job-events:{job_id}"


def webhook_state_key(job_id: str) -> str:
    """Hash of what APPEND_EVENT remembers of a job with a webhook (``WEBHOOK_STARTED``,
    ``WEBHOOK_SENT_AT``): a second start (a job taken over) is a progress, and progress requests
    are at most one per the webhook's ``progress_interval_s``. Expires with the job's record."""
    return f"{KEY_PREFIX}:webhook-state:{job_id}"


def init_image_key(job_id: str) -> str:
    """String: the base64 of a job's init image (PNG or JPEG bytes), kept out of the job hash so
    that reading a record never carries pixels. Written by the API just before SUBMIT, with the
    job TTL (the longest an unfinished job's record lives); removed when SUBMIT stores no job."""
    return f"{KEY_PREFIX}:init-image:{job_id}"
