"""The webhook dispatcher: delivers the requests that ``APPEND_EVENT`` writes to the webhooks
stream beside a job's events (``protocol.webhooks``), with retries and a dead-letter stream.

**Where it runs.** An asyncio task in every API process, started by ``app.main``'s lifespan when
the deployment has a webhook secret. Delivering is waiting on the network, not computing, so an
event loop carries a few dozen attempts at once at no cost to the requests beside them; the API
is already the stateless tier that scales out, with the Redis clients, settings and ``/metrics``
a dispatcher needs; and there is no further process to size, watch and keep alive. Any replica
delivers (the consumer group ``webhook-senders`` hands each request to one), a dead replica's
work is taken over, and the workers never wait on a receiver: their only part is the request
that ``APPEND_EVENT`` writes in the call that appends the event. (A separate process would only
pay off if outbound traffic had to leave from a dedicated, egress-filtered place; this module is
the unit to move there.)

**How a delivery moves.**

1. A new request is read with ``XREADGROUP`` and attempted at once. Requests of one job read by
   one replica are attempted in order (start, progress, completed); a progress request still
   waiting behind its job's earlier ones is dropped when a newer one arrives. A retried request
   may land after later ones; the body's ``timestamp`` and ``data.step`` order them.
2. Delivered (a 2xx): the entry is acknowledged and deleted. Failed: its delivery, with the body
   fixed at the first attempt, enters the retry schedule (a sorted set scored by due time) and
   the entry is acknowledged, in one ``MULTI``.
3. Each replica claims due retries (``CLAIM_DUE_WEBHOOKS`` re-scores them to the end of a lease,
   so a replica that dies mid-attempt leaves them due again) and attempts them; the delays
   double from ``WEBHOOK_BACKOFF_S`` up to ``WEBHOOK_BACKOFF_MAX_S`` (less up to 10 % jitter; a
   ``Retry-After`` may stretch one).
4. After ``WEBHOOK_MAX_ATTEMPTS`` attempts, or at once for ``410 Gone`` or a refused address,
   the delivery goes to the dead-letter stream ``denoise:webhooks:dead`` with the last error.
5. A replica refreshes its in-flight entries every third of ``WEBHOOK_LEASE_S`` (``XCLAIM
   JUSTID``); entries idle longer belong to a replica that died and are taken over with
   ``XAUTOCLAIM``.

Delivery is at least once: a replica that dies between a receiver's 2xx and the acknowledgement
leaves the request to be sent again, with the same ``webhook-id``, which receivers deduplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from app.job_queue import JobQueue
from app.metrics import ApiMetrics
from app.webhook_sender import WebhookSender
from protocol.job_scripts import CLAIM_DUE_WEBHOOKS
from protocol.keys import (
    WEBHOOK_DEAD_LETTERS_KEY,
    WEBHOOK_RETRIES_KEY,
    WEBHOOK_SENDERS_GROUP,
    WEBHOOKS_STREAM,
)
from protocol.records import CorruptJobRecord
from protocol.schema import JobView
from protocol.webhooks import DeliveryRequest, WebhookDelivery, delivery_of

log = logging.getLogger("app.webhooks")

POLL_S = 0.5  # the longest a due retry waits for the loop (a new request wakes it at once)
JITTER = 0.1  # a delay is shortened by up to this fraction, so retries of one outage spread out
DEAD_LETTER_MAXLEN = 10_000


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    backoff_s: float
    backoff_max_s: float

    def delay(self, attempts: int, retry_after_s: float | None = None) -> float:
        """Seconds before the next attempt, after ``attempts`` failed ones: backoff_s, 2×, 4×, …
        capped at backoff_max_s; a receiver's ``Retry-After`` may lengthen it up to the cap."""
        delay = min(self.backoff_s * 2 ** (attempts - 1), self.backoff_max_s)
        if retry_after_s is not None:
            delay = min(max(delay, retry_after_s), self.backoff_max_s)
        return delay * (1 - JITTER * random.random())


def consumer_name() -> str:
    """This replica in the consumer group (a pod's host name is unique; the pid tells restarts apart)."""
    return f"{socket.gethostname()}-{os.getpid()}"


class WebhookDispatcher:
    """Delivers webhooks from one API process (see the module doc).

    Args:
        client: Redis without a short read timeout (the stream read blocks up to ``POLL_S``).
        queue: reads a completed job's record for its body.
        concurrency: attempts in flight at once, waiting ones included.
        lease_s: a request or retry held this long by a replica that stopped is taken over.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        queue: JobQueue,
        sender: WebhookSender,
        metrics: ApiMetrics,
        policy: RetryPolicy,
        concurrency: int,
        lease_s: float,
        consumer: str | None = None,
    ) -> None:
        self.client = client
        self.queue = queue
        self.sender = sender
        self.metrics = metrics
        self.policy = policy
        self.concurrency = concurrency
        self.lease_s = lease_s
        self.consumer = consumer or consumer_name()
        self._claim_due = client.register_script(CLAIM_DUE_WEBHOOKS)
        self._tasks: set[asyncio.Task[None]] = set()
        self._entries: set[str] = set()  # stream entries in flight here (their leases are refreshed)
        self._last_of_job: dict[str, asyncio.Task[None]] = {}
        # a job's progress request still waiting behind its earlier ones, and those a newer one replaced
        self._waiting_progress: dict[str, str] = {}
        self._superseded: set[str] = set()
        self._maintained_at = float("-inf")
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="webhook-dispatcher")

    async def stop(self) -> None:
        """Stops at once: attempts in flight are dropped and taken over by another replica after
        the lease (their entries are unacknowledged, their retries leased)."""
        for task in [t for t in (self._task, *self._tasks) if t is not None]:
            task.cancel()
        for task in [t for t in (self._task, *self._tasks) if t is not None]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.sender.aclose()

    # ------------------------------------------------------------------ the loop
    async def _run(self) -> None:
        while True:
            try:
                await self._ensure_group()
                while True:
                    await self._poll()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # Redis away, the group deleted: start over in a second
                log.warning("webhook dispatcher: %s: %s; again in 1 s", type(error).__name__, error)
                await asyncio.sleep(1.0)

    async def _ensure_group(self) -> None:
        try:
            await self.client.xgroup_create(WEBHOOKS_STREAM, WEBHOOK_SENDERS_GROUP, id="0", mkstream=True)
        except aioredis.ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise

    async def _poll(self) -> None:
        """One pass: keep leases, take over abandoned requests, claim due retries, read new ones."""
        if time.monotonic() - self._maintained_at >= self.lease_s / 3:
            self._maintained_at = time.monotonic()
            await self._refresh_leases()
            await self._take_over()
        if self._free() > 0:
            now = time.time()
            due = await self._claim_due(
                keys=[WEBHOOK_RETRIES_KEY], args=[repr(now), repr(now + self.lease_s), self._free()]
            )
            for member in due:
                self._spawn(self._retry(str(member)))
        if self._free() == 0:
            await asyncio.wait(self._tasks, timeout=POLL_S, return_when=asyncio.FIRST_COMPLETED)
            return
        response: Any = await self.client.xreadgroup(
            WEBHOOK_SENDERS_GROUP,
            self.consumer,
            {WEBHOOKS_STREAM: ">"},
            count=self._free(),
            block=int(POLL_S * 1000),
        )
        for _stream, entries in response or []:
            for entry_id, fields in entries:
                self._start_request(str(entry_id), fields)

    def _free(self) -> int:
        return self.concurrency - len(self._tasks)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _refresh_leases(self) -> None:
        if self._entries:
            await self.client.xclaim(
                WEBHOOKS_STREAM,
                WEBHOOK_SENDERS_GROUP,
                self.consumer,
                min_idle_time=0,
                message_ids=list(self._entries),
                justid=True,
            )

    async def _take_over(self) -> None:
        """Starts the requests that a replica which stopped had read and not finished."""
        if self._free() <= 0:
            return
        response: Any = await self.client.xautoclaim(
            WEBHOOKS_STREAM,
            WEBHOOK_SENDERS_GROUP,
            self.consumer,
            min_idle_time=int(self.lease_s * 1000),
            count=self._free(),
        )
        for entry_id, fields in response[1] if response else []:
            if entry_id in self._entries:
                continue  # this replica's own, still in flight
            if not fields:  # trimmed from the stream (WEBHOOKS_STREAM_MAXLEN) before it was sent
                log.warning("webhook request %s was trimmed from the stream undelivered", entry_id)
                await self.client.xack(WEBHOOKS_STREAM, WEBHOOK_SENDERS_GROUP, entry_id)
                continue
            log.warning("webhook request %s taken over from a replica that stopped", entry_id)
            self._start_request(str(entry_id), fields)

    # ------------------------------------------------------------------ one delivery
    def _start_request(self, entry_id: str, fields: dict[str, str]) -> None:
        """Starts a new request's first attempt, after the requests of its job read before it."""
        try:
            request = DeliveryRequest.from_fields(fields)
        except ValueError as error:
            self._spawn(self._dead_letter_entry(entry_id, fields, str(error)))
            return
        job_id = request.event.job_id
        self._entries.add(entry_id)
        if request.kind == "progress" and job_id in self._last_of_job:
            # progress says where a job stands now: one still waiting is replaced by a newer one,
            # so a slow receiver's queue holds at most start, one progress and completed per job
            if (older := self._waiting_progress.get(job_id)) is not None:
                self._superseded.add(older)
            self._waiting_progress[job_id] = entry_id
        task = self._spawn(self._first_attempt(entry_id, request, self._last_of_job.get(job_id)))
        self._last_of_job[job_id] = task

        def done(finished: asyncio.Task[None]) -> None:
            self._entries.discard(entry_id)
            if self._last_of_job.get(job_id) is finished:
                del self._last_of_job[job_id]

        task.add_done_callback(done)

    async def _first_attempt(
        self, entry_id: str, request: DeliveryRequest, after: asyncio.Task[None] | None
    ) -> None:
        if after is not None:
            await asyncio.wait({after})
        job_id = request.event.job_id
        if self._waiting_progress.get(job_id) == entry_id:
            del self._waiting_progress[job_id]
        try:
            if entry_id in self._superseded:
                self._superseded.discard(entry_id)
                await self._let_go(entry_id)
                self.metrics.webhook_deliveries.labels("superseded").inc()
                return
            job = None
            if request.kind == "completed":
                try:
                    record = await self.queue.get(request.event.job_id)
                except CorruptJobRecord:
                    record = None
                job = JobView.of(record).model_dump(mode="json") if record is not None else None
            await self._attempt(delivery_of(request, job), entry_id=entry_id)
        except Exception:  # Redis away: the entry stays pending and is taken over after the lease
            log.exception("webhook request %s (job %s) not handled", entry_id, request.event.job_id)

    async def _retry(self, member: str) -> None:
        try:
            delivery = WebhookDelivery.model_validate_json(member)
        except ValueError as error:
            pipe = self.client.pipeline(transaction=True)
            pipe.zrem(WEBHOOK_RETRIES_KEY, member)
            self._dead_letter(pipe, member, f"not a webhook delivery: {error}")
            await pipe.execute()
            self.metrics.webhook_deliveries.labels("dead_lettered").inc()
            return
        try:
            await self._attempt(delivery, member=member)
        except Exception:  # Redis away: the member is due again when its lease ends
            log.exception("webhook %s (job %s) retry not handled", delivery.id, delivery.job_id)

    async def _attempt(
        self, delivery: WebhookDelivery, entry_id: str | None = None, member: str | None = None
    ) -> None:
        """One attempt, then, in one ``MULTI``: the request or claimed retry is let go, and the
        delivery is done, rescheduled or dead-lettered."""
        attempt = await self.sender.send(delivery)
        delivery = delivery.model_copy(
            update={
                "attempts": delivery.attempts + 1,
                "last_error": None if attempt.delivered else attempt.detail,
            }
        )
        self.metrics.webhook_attempts.labels(attempt.result).inc()
        self.metrics.webhook_attempt_seconds.observe(attempt.seconds)
        pipe = self.client.pipeline(transaction=True)
        if entry_id is not None:
            pipe.xack(WEBHOOKS_STREAM, WEBHOOK_SENDERS_GROUP, entry_id)
            pipe.xdel(WEBHOOKS_STREAM, entry_id)
        if member is not None:
            pipe.zrem(WEBHOOK_RETRIES_KEY, member)
        outcome, delay = None, None
        if attempt.delivered:
            outcome = "delivered"
        elif attempt.final or delivery.attempts >= self.policy.max_attempts:
            outcome = "dead_lettered"
            self._dead_letter(pipe, delivery.model_dump_json(), attempt.detail)
        else:
            delay = self.policy.delay(delivery.attempts, attempt.retry_after_s)
            pipe.zadd(WEBHOOK_RETRIES_KEY, {delivery.model_dump_json(): time.time() + delay})
        await pipe.execute()
        log.log(
            logging.INFO if attempt.delivered else logging.WARNING,
            "webhook %s %s job=%s attempt=%d result=%s detail=%r seconds=%.3f next=%s",
            delivery.id,
            delivery.type,
            delivery.job_id,
            delivery.attempts,
            attempt.result,
            attempt.detail,
            attempt.seconds,
            outcome or f"retry in {delay:.2f} s",
        )
        if outcome is not None:
            self.metrics.webhook_deliveries.labels(outcome).inc()
        if attempt.delivered:
            self.metrics.webhook_latency.observe(max(0.0, time.time() - delivery.event_at))

    async def _let_go(self, entry_id: str) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.xack(WEBHOOKS_STREAM, WEBHOOK_SENDERS_GROUP, entry_id)
        pipe.xdel(WEBHOOKS_STREAM, entry_id)
        await pipe.execute()

    def _dead_letter(self, pipe: Any, delivery_json: str, reason: str) -> None:
        record = {"delivery": delivery_json, "reason": reason[:1000], "at": f"{time.time():.3f}"}
        pipe.xadd(WEBHOOK_DEAD_LETTERS_KEY, record, maxlen=DEAD_LETTER_MAXLEN, approximate=True)

    async def _dead_letter_entry(self, entry_id: str, fields: dict[str, str], reason: str) -> None:
        """A stream entry that is no delivery request: kept with the reason, and let go."""
        log.warning("webhook request %s dead-lettered: %s", entry_id, reason)
        pipe = self.client.pipeline(transaction=True)
        self._dead_letter(pipe, str(fields)[:4096], f"malformed request: {reason}")
        pipe.xack(WEBHOOKS_STREAM, WEBHOOK_SENDERS_GROUP, entry_id)
        pipe.xdel(WEBHOOKS_STREAM, entry_id)
        await pipe.execute()
        self.metrics.webhook_deliveries.labels("dead_lettered").inc()
