"""A job's events as Server-Sent Events, read from its Redis events stream (``protocol.events``),
so any API replica can serve them.

Each SSE event's ``id`` is the stream entry id: a client that reconnects with ``Last-Event-ID``
resumes right after the last event it saw. A final event carries the job's body as
``GET /v1/jobs/{id}`` returns it (read from the record, so the images are stored once). The
stream ends after the final event. A reader that hears nothing for ``idle_s`` sends a comment
(keeps proxies from closing the connection) and re-reads the job record: if the job has
finished but its final event is missing (written by a worker that died just after storing the
result, or expired), it sends a final event made from the record, so no reader waits forever.
A client that disconnects ends its generator at the next await: it holds nothing else.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import redis.asyncio as aioredis

from app.job_queue import JobQueue
from protocol.events import JobEvent, event_from_fields
from protocol.keys import job_events_key
from protocol.schema import TERMINAL_STATUSES, JobRecord, JobView

SSE_MEDIA_TYPE = "text/event-stream"
ENTRY_ID_PATTERN = r"^\d{1,20}-\d{1,20}$"


def sse_frame(event: JobEvent, event_id: str | None) -> bytes:
    lines = [] if event_id is None else [f"id: {event_id}"]
    lines += [f"event: {event.type}", f"data: {event.model_dump_json()}", "", ""]
    return "\n".join(lines).encode()


def final_event_of(record: JobRecord) -> JobEvent:
    """The final event a finished record implies (used when its own final event is missing)."""
    return JobEvent(
        type=record.status,  # type: ignore[arg-type]  # a terminal status is a final event type
        job_id=record.id,
        at=record.finished_at or time.time(),
        error=record.error,
    )


async def job_event_stream(
    client: aioredis.Redis, queue: JobQueue, job_id: str, last_event_id: str | None, idle_s: float = 10.0
) -> AsyncIterator[bytes]:
    """SSE frames of ``job_id``'s events after ``last_event_id`` (all of them when None).

    ``client`` must allow blocking reads (no socket read timeout shorter than ``idle_s``).
    """
    key = job_events_key(job_id)
    after = last_event_id or "0"
    yield f"retry: {int(idle_s * 1000)}\n\n".encode()
    while True:
        response: Any = await client.xread({key: after}, count=100, block=int(idle_s * 1000))
        entries = response[0][1] if response else []
        if not entries:
            record = await queue.get(job_id)
            if record is None or record.status in TERMINAL_STATUSES:
                if record is not None:
                    final = final_event_of(record)
                    final.job = JobView.of(record)
                    yield sse_frame(final, None)
                return
            yield b": keep-alive\n\n"
            continue
        for entry_id, fields in entries:
            after = str(entry_id)
            event = event_from_fields(fields)
            if event.final:
                record = await queue.get(job_id)
                event.job = JobView.of(record) if record is not None else None
            yield sse_frame(event, after)
            if event.final:
                return
