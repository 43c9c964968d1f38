"""Wakes waiting sync requests when a worker publishes that their job changed state.

One pub/sub subscription per API process feeds an in-memory map of waiters. Pub/sub is
at-most-once (a message sent while the subscription reconnects is lost), so a waiter also
re-reads the job record after subscribing and at least every ``recheck_s`` seconds: a lost
message costs at most that much latency, never a stuck request. A waiter never outlives its
timeout: while Redis is unreachable it keeps its last known record and retries until then, and
on shutdown (``drain``) every waiter answers at once, so the client gets its job's URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from app.job_queue import JobQueue
from protocol.keys import EVENTS_CHANNEL
from protocol.schema import TERMINAL_STATUSES, JobRecord

log = logging.getLogger("app.events")


class JobEvents:
    def __init__(self, client: aioredis.Redis, queue: JobQueue, recheck_s: float = 1.0) -> None:
        self.client = client
        self.queue = queue
        self.recheck_s = recheck_s
        self._waiters: dict[str, set[asyncio.Event]] = defaultdict(set)
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._draining = False

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._listen(), name="job-events")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def drain_threadsafe(self) -> None:
        """From a signal handler or another thread: every waiter answers now with what it has."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        self._draining = True
        for events in self._waiters.values():
            for event in events:
                event.set()

    async def _listen(self) -> None:
        while True:
            try:
                async with self.client.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(EVENTS_CHANNEL)
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            for event in self._waiters.get(str(message["data"]), ()):
                                event.set()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the waiters' rechecks cover the gap
                log.warning("event subscription lost (%s); resubscribing in 1 s", error)
                await asyncio.sleep(1.0)

    async def wait_finished(self, job_id: str, timeout_s: float, known: JobRecord) -> JobRecord:
        """The job's record once it is finished, else its latest record at ``timeout_s``.

        ``known`` is the record the caller already has; it is returned when Redis cannot be read
        (the client still learns the job's URL) or when the record has expired meanwhile.
        """
        event = asyncio.Event()
        self._waiters[job_id].add(event)
        deadline = time.monotonic() + timeout_s
        latest = known
        try:
            while True:
                event.clear()  # before the read: a message arriving after it is not lost
                try:
                    record = await self.queue.get(job_id)
                except RedisError as error:
                    log.warning("job %s: cannot read its record (%s); still waiting", job_id, error)
                else:
                    if record is None:  # expired meanwhile
                        return latest
                    latest = record
                remaining = deadline - time.monotonic()
                if latest.status in TERMINAL_STATUSES or remaining <= 0 or self._draining:
                    return latest
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), timeout=min(remaining, self.recheck_s))
        finally:
            self._waiters[job_id].discard(event)
            if not self._waiters[job_id]:
                del self._waiters[job_id]
