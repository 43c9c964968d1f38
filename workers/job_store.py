"""The worker's side of Redis: claim jobs from the streams, update and finish job records.

A ``WorkerJobStore`` is one model's stream (a worker holds one per model it serves); the
``StreamReader`` reads the new entries of all of them in one round trip.

All values are JSON (``protocol.records``); status transitions go through the Lua scripts of
``protocol.job_scripts`` so that a job is finished exactly once.

Leases: an entry a worker has read stays in the consumer group's pending list until it is
acknowledged. A live worker refreshes the idle time of its in-flight entries (``XCLAIM`` to
itself, ``JUSTID``) more often than ``lease``; entries idle for longer belong to a worker that
died and are taken over with ``XAUTOCLAIM``. Entries that cannot be run (no valid job id, a
record that is not valid JSON, a job that keeps killing its workers) are copied to the model's
dead-letter stream and acknowledged.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import time
from dataclasses import dataclass
from typing import Any

import redis

from protocol import job_scripts
from protocol.events import JobEvent, append_event_call
from protocol.keys import (
    CANCEL_REQUESTED,
    CANCEL_REQUESTED_FIELD,
    CONSUMER_GROUP,
    ERROR_FIELD,
    EVENTS_CHANNEL,
    FINISHED_AT_FIELD,
    JOB_ID_PATTERN,
    MODELS_KEY,
    PROGRESS_FIELD,
    RESULT_FIELD,
    STATUS_FIELD,
    STREAM_JOB_FIELD,
    dead_letter_stream_key,
    init_image_key,
    job_key,
    jobs_stream_key,
    tokenizer_key,
    worker_heartbeat_key,
)
from protocol.records import hash_fields, record_from_hash
from protocol.schema import (
    CANCELLED,
    FAILED,
    SUCCEEDED,
    JobError,
    JobRecord,
    JobResult,
    ModelInfo,
    Progress,
    WorkerHeartbeat,
)

DEAD_LETTER_MAXLEN = 10_000

log = logging.getLogger(__name__)
_JOB_ID = re.compile(JOB_ID_PATTERN)


@dataclass(frozen=True)
class StreamEntry:
    entry_id: str
    job_id: str | None  # None when the entry is malformed
    fields: dict[str, str]

    @classmethod
    def parse(cls, entry_id: str, fields: dict[str, str] | None) -> StreamEntry:
        fields = dict(fields or {})
        job_id = fields.get(STREAM_JOB_FIELD)
        valid = job_id is not None and _JOB_ID.match(job_id) is not None and len(fields) == 1
        return cls(entry_id=entry_id, job_id=job_id if valid else None, fields=fields)


def _entries_by_stream(response: Any) -> dict[str, list[StreamEntry]]:
    return {
        str(stream): [StreamEntry.parse(entry_id, fields) for entry_id, fields in messages]
        for stream, messages in response or []
    }


class StreamReader:
    """Reads new entries of the job streams of every model a worker serves; each call is ONE
    round trip, however many streams.

    Args:
        worker: the consumer name in each stream's group.
    """

    def __init__(self, client: redis.Redis, worker: str) -> None:
        self.client = client
        self.worker = worker

    def read_new(self, counts: dict[str, int], block_ms: int | None) -> dict[str, list[StreamEntry]]:
        """New entries of the streams in ``counts`` (stream -> entries wanted) in one
        ``XREADGROUP``, which blocks up to ``block_ms`` (None: not at all) until any of them has
        one. Redis applies one COUNT to every stream, so this asks for the largest: meant for an
        idle worker, whose models all have their whole row budget free."""
        wanted = {stream: count for stream, count in counts.items() if count > 0}
        if not wanted:
            return {}
        streams: dict[Any, Any] = dict.fromkeys(wanted, ">")
        response = self.client.xreadgroup(
            CONSUMER_GROUP, self.worker, streams, count=max(wanted.values()), block=block_ms
        )
        return _entries_by_stream(response)

    def read_new_and_cancel_flags(
        self, counts: dict[str, int], job_ids: list[str]
    ) -> tuple[dict[str, list[StreamEntry]], set[str]]:
        """One round trip while busy: up to ``counts[stream]`` new entries of each stream
        (non-blocking; a count of 0 reads none) and which of ``job_ids`` a client asked to cancel."""
        streams = [stream for stream, count in counts.items() if count > 0]
        pipe = self.client.pipeline(transaction=False)
        for stream in streams:
            pipe.xreadgroup(CONSUMER_GROUP, self.worker, {stream: ">"}, count=counts[stream])
        for job_id in job_ids:
            pipe.hget(job_key(job_id), CANCEL_REQUESTED_FIELD)
        replies = pipe.execute()
        entries: dict[str, list[StreamEntry]] = {}
        for reply in replies[: len(streams)]:
            entries.update(_entries_by_stream(reply))
        flags = replies[len(streams) :]
        return entries, {
            job_id for job_id, flag in zip(job_ids, flags, strict=True) if flag == CANCEL_REQUESTED
        }


class WorkerJobStore:
    def __init__(self, client: redis.Redis, model: str, worker: str, job_ttl_s: int) -> None:
        self.client = client
        self.model = model
        self.worker = worker
        self.job_ttl_s = job_ttl_s
        self.stream = jobs_stream_key(model)
        self._finish = client.register_script(job_scripts.FINISH)
        self._start = client.register_script(job_scripts.START)
        self._append_event = client.register_script(job_scripts.APPEND_EVENT)

    # -- stream
    def ensure_group(self) -> None:
        try:
            self.client.xgroup_create(self.stream, CONSUMER_GROUP, id="0", mkstream=True)
        except redis.ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise

    def refresh_leases(self, entry_ids: list[str]) -> None:
        """Resets the idle time of this worker's in-flight entries, so nobody takes them over."""
        ids: list[Any] = list(entry_ids)
        if ids:
            self.client.xclaim(
                self.stream,
                CONSUMER_GROUP,
                self.worker,
                min_idle_time=0,
                message_ids=ids,
                justid=True,
            )

    def reclaim(self, count: int, lease_s: float) -> list[StreamEntry]:
        """Takes over up to ``count`` entries idle for longer than ``lease_s`` (their worker died)."""
        response: Any = self.client.xautoclaim(
            self.stream, CONSUMER_GROUP, self.worker, min_idle_time=int(lease_s * 1000), count=count
        )
        claimed = response[1] if response else []
        entries = [
            StreamEntry.parse(entry_id, fields) for entry_id, fields in claimed if entry_id is not None
        ]
        if len(entries) < len(claimed):
            self._ack_trimmed(lease_s)
        return entries

    def _ack_trimmed(self, lease_s: float) -> None:
        """Acknowledges pending entries that are gone from the stream: the submit script trims
        entries older than the job TTL, and Redis 6.2's XAUTOCLAIM answers nil for those, without
        their ids and without removing them from the pending list (Redis 7 does both itself)."""
        pending = self.client.xpending_range(
            self.stream, CONSUMER_GROUP, min="-", max="+", count=1000, idle=int(lease_s * 1000)
        )
        gone = [
            p["message_id"]
            for p in pending
            if not self.client.xrange(self.stream, p["message_id"], p["message_id"])
        ]
        if gone:
            log.info(
                "%d pending entries of %s were trimmed (their jobs expired): acknowledged",
                len(gone),
                self.stream,
            )
            self.client.xack(self.stream, CONSUMER_GROUP, *gone)

    def dead_letter(self, entry: StreamEntry, reason: str, job_id: str | None = None) -> None:
        """Copies the entry to the dead-letter stream with the reason, and acknowledges it."""
        record = {
            "entry": entry.entry_id,
            "job": job_id or entry.job_id or "",
            "fields": json.dumps(entry.fields, ensure_ascii=True)[:4096],
            "reason": reason[:1000],
            "worker": self.worker,
            "at": f"{time.time():.3f}",
        }
        pipe = self.client.pipeline(transaction=True)
        pipe.xadd(dead_letter_stream_key(self.model), record, maxlen=DEAD_LETTER_MAXLEN, approximate=True)  # type: ignore[arg-type]
        pipe.xack(self.stream, CONSUMER_GROUP, entry.entry_id)
        pipe.execute()

    def ack(self, entry_id: str) -> None:
        self.client.xack(self.stream, CONSUMER_GROUP, entry_id)

    # -- job records
    def start(self, job_id: str) -> JobRecord | None:
        """Marks the job running; None when it is finished, cancelled or expired."""
        attempts = self._start(
            keys=[job_key(job_id)], args=[json.dumps(self.worker), json.dumps(time.time())]
        )
        if not attempts:
            return None
        fields = self.client.hgetall(job_key(job_id))
        if not fields:
            return None
        return record_from_hash(job_id, fields)

    def init_image(self, job_id: str) -> bytes | None:
        """The job's init image (PNG or JPEG bytes), None when it has none or it expired."""
        encoded = self.client.get(init_image_key(job_id))
        return None if encoded is None else base64.b64decode(encoded)

    def write_progress(self, progress: dict[str, Progress], events: list[JobEvent]) -> None:
        """The jobs' progress fields and their ``running`` events, in one round trip."""
        pipe = self.client.pipeline(transaction=False)
        for job_id, value in progress.items():
            fields: dict[Any, Any] = hash_fields({PROGRESS_FIELD: value.model_dump()})
            pipe.hset(job_key(job_id), mapping=fields)
        for event in events:
            self._append_event_to(pipe, event)
        pipe.execute()

    def append_event(self, event: JobEvent) -> None:
        """Appends one event to its job's events stream (SSE, webhooks, the client's progress)."""
        self._append_event_to(self.client, event)

    def _append_event_to(self, client: Any, event: JobEvent) -> None:
        keys, args = append_event_call(event, self.job_ttl_s)
        self._append_event(keys=keys, args=args, client=client)

    def _finish_with(self, job_id: str, values: dict[str, object]) -> bool:
        args: list[str] = [str(self.job_ttl_s)]
        for name, value in hash_fields({FINISHED_AT_FIELD: time.time(), **values}).items():
            args.extend([name, value])
        written = bool(self._finish(keys=[job_key(job_id)], args=args))
        self.client.publish(EVENTS_CHANNEL, job_id)
        return written

    def succeed(self, job_id: str, result: JobResult, progress: Progress) -> bool:
        return self._finish_with(
            job_id,
            {
                STATUS_FIELD: SUCCEEDED,
                RESULT_FIELD: result.model_dump(mode="json"),
                PROGRESS_FIELD: progress.model_dump(),
            },
        )

    def fail(self, job_id: str, error: JobError, progress: Progress | None = None) -> bool:
        values: dict[str, object] = {STATUS_FIELD: FAILED, ERROR_FIELD: error.model_dump()}
        if progress is not None:
            values[PROGRESS_FIELD] = progress.model_dump()
        return self._finish_with(job_id, values)

    def cancel(self, job_id: str, progress: Progress) -> bool:
        return self._finish_with(job_id, {STATUS_FIELD: CANCELLED, PROGRESS_FIELD: progress.model_dump()})

    def publish(self, job_id: str) -> None:
        self.client.publish(EVENTS_CHANNEL, job_id)

    # -- presence
    def register_model(self, info: ModelInfo, tokenizer_json: str | None = None) -> None:
        """Publishes the model (``GET /v1/models``) and, for a prompt model, its tokenizer, so the
        API counts prompt tokens as this worker will."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hset(MODELS_KEY, info.name, info.model_dump_json())
        if tokenizer_json is not None:
            pipe.set(tokenizer_key(info.name), tokenizer_json)
        pipe.execute()

    def restore_tokenizer(self, model: str, tokenizer_json: str | None) -> None:
        """Publishes the tokenizer again if Redis lost it (a restart without persistence); the
        large value crosses the network only then."""
        if tokenizer_json is not None and not self.client.exists(tokenizer_key(model)):
            self.client.set(tokenizer_key(model), tokenizer_json)

    def heartbeat(self, beat: WorkerHeartbeat, ttl_s: float) -> None:
        self.client.set(worker_heartbeat_key(self.worker), beat.model_dump_json(), px=int(ttl_s * 1000))

    def clear_heartbeat(self) -> None:
        self.client.delete(worker_heartbeat_key(self.worker))
