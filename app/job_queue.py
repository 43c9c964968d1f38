"""The API's side of Redis: enqueue jobs, read and cancel them, list models and workers."""

from __future__ import annotations

import base64
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from app.errors import IdempotencyKeyReused, TooManyRequests
from protocol import job_scripts
from protocol.events import JobEvent, append_event_call
from protocol.keys import (
    CONSUMER_GROUP,
    EVENTS_CHANNEL,
    MODELS_KEY,
    WORKER_HEARTBEAT_PATTERN,
    CancelOutcome,
    SubmitOutcome,
    idempotency_key,
    init_image_key,
    job_key,
    jobs_stream_key,
    queued_jobs_key,
)
from protocol.records import decode_status, record_from_hash, record_to_hash
from protocol.schema import (
    JobRecord,
    ModelInfo,
    ResolvedConfig,
    WebhookSettings,
    WorkerHeartbeat,
    serving_workers,
)


@dataclass(frozen=True)
class Idempotency:
    """A client's ``Idempotency-Key``, scoped to the caller, and the fingerprint of its request."""

    principal: str
    key: str
    fingerprint: str


@dataclass(frozen=True)
class Catalog:
    """What the workers offer, as read in one go: every model a worker ever registered
    (``MODELS_KEY``) and the models that a serving worker names in its heartbeat now."""

    registered: dict[str, ModelInfo]
    served: dict[str, ModelInfo]  # registered and named by a fresh, ready or busy worker

    @classmethod
    def of(
        cls, registered: dict[str, ModelInfo], beats: list[WorkerHeartbeat], now: float, stale_s: float
    ) -> Catalog:
        live = {name for beat in serving_workers(beats, now, stale_s) for name in beat.models}
        return cls(registered, {name: info for name, info in registered.items() if name in live})

    def offered(self, require_live_worker: bool) -> dict[str, ModelInfo]:
        """The models a request may name: those served, or every registered one where workers
        scale from zero (a queued job is what wakes one)."""
        return self.served if require_live_worker else self.registered


@dataclass(frozen=True)
class Submission:
    record: JobRecord
    replayed: bool  # True: the Idempotency-Key had already created this job
    queued: int | None  # the model's queued jobs after this submission (None on a replay)


class JobQueue:
    def __init__(
        self,
        client: aioredis.Redis,
        job_ttl_s: int,
        models_cache_s: float,
        heartbeat_stale_s: float = 15.0,
        max_queued_jobs: int = 1000,
        queue_full_retry_after_s: int = 2,
        idempotency_ttl_s: int = 86_400,
    ) -> None:
        self.client = client
        self.job_ttl_s = job_ttl_s
        self.models_cache_s = models_cache_s
        self.heartbeat_stale_s = heartbeat_stale_s
        self.max_queued_jobs = max_queued_jobs
        self.queue_full_retry_after_s = queue_full_retry_after_s
        self.idempotency_ttl_s = idempotency_ttl_s
        self._catalog = Catalog({}, {})
        self._catalog_read_at = float("-inf")
        self._cancel = client.register_script(job_scripts.CANCEL)
        self._submit = client.register_script(job_scripts.SUBMIT)
        self._append_event = client.register_script(job_scripts.APPEND_EVENT)

    async def catalog(self) -> Catalog:
        """The registered models and those a live worker serves: one read of the registrations
        and the heartbeats, reused for ``models_cache_s`` (read again at once while no model is
        registered, so the first worker is seen without delay)."""
        now = time.monotonic()
        if now - self._catalog_read_at > self.models_cache_s or not self._catalog.registered:
            raw = await self.client.hgetall(MODELS_KEY)
            registered = {str(name): ModelInfo.model_validate_json(value) for name, value in raw.items()}
            beats = await self.live_workers()
            self._catalog = Catalog.of(registered, beats, time.time(), self.heartbeat_stale_s)
            self._catalog_read_at = now
        return self._catalog

    async def submit(
        self,
        config: ResolvedConfig,
        timeout_s: float,
        idempotency: Idempotency | None = None,
        webhook: WebhookSettings | None = None,
        init_image: bytes | None = None,
    ) -> Submission:
        """Stores the job record and appends its id to the model's stream, in one atomic script
        (the init image first, under its own key: a worker may start the job the moment it is in
        the stream).

        Raises:
            TooManyRequests: the model already has ``max_queued_jobs`` queued jobs.
            IdempotencyKeyReused: the key created a job for a different request.
        """
        now = time.time()
        record = JobRecord(
            id=uuid.uuid4().hex,
            status="queued",
            model=config.model,
            config=config,
            created_at=now,
            deadline_at=now + timeout_s,
            webhook=webhook,
        )
        keys = [job_key(record.id), jobs_stream_key(config.model), queued_jobs_key(config.model)]
        if idempotency is not None:
            keys.append(idempotency_key(idempotency.principal, idempotency.key))
        args: list[Any] = [
            record.id,
            repr(now),
            self.job_ttl_s,
            self.max_queued_jobs,
            self.idempotency_ttl_s,
            idempotency.fingerprint if idempotency else "",
        ]
        for name, value in record_to_hash(record).items():
            args.extend([name, value])
        if init_image is not None:
            await self.client.set(
                init_image_key(record.id), base64.b64encode(init_image).decode("ascii"), ex=self.job_ttl_s
            )
        try:
            outcome, *rest = await self._submit(keys=keys, args=args)
        except BaseException:
            if init_image is not None:
                await self.client.delete(init_image_key(record.id))
            raise
        if init_image is not None and outcome != SubmitOutcome.CREATED:  # no job holds it
            await self.client.delete(init_image_key(record.id))
        if outcome == SubmitOutcome.CREATED:
            queued = int(rest[1])
            await self.append_event(JobEvent(type="queued", job_id=record.id, at=now, queue_position=queued))
            return Submission(record, replayed=False, queued=queued)
        if outcome == SubmitOutcome.REPLAY:
            flat = rest[1]
            return Submission(
                record_from_hash(str(rest[0]), dict(zip(flat[::2], flat[1::2], strict=True))), True, None
            )
        if outcome == SubmitOutcome.CONFLICT:
            assert idempotency is not None
            raise IdempotencyKeyReused(idempotency.key, str(rest[0]))
        raise TooManyRequests(
            f"model {config.model!r} has {rest[0]} queued jobs, the cap of this deployment "
            f"(max_queued_jobs={self.max_queued_jobs}); nothing was enqueued, retry later",
            self.queue_full_retry_after_s,
        )

    async def get(self, job_id: str) -> JobRecord | None:
        fields = await self.client.hgetall(job_key(job_id))
        return record_from_hash(job_id, fields) if fields else None

    async def cancel(self, job_id: str) -> tuple[CancelOutcome, str | None]:
        """What the cancel did, and for ``ALREADY`` the status the job had finished with."""
        outcome = await self._cancel(
            keys=[job_key(job_id)], args=[str(self.job_ttl_s), json.dumps(time.time())]
        )
        kind, _, status = str(outcome).partition(":")
        if kind == CancelOutcome.CANCELLED:  # it was queued: its final event is written here
            await self.append_event(JobEvent(type="cancelled", job_id=job_id, at=time.time()))
            await self.client.publish(EVENTS_CHANNEL, job_id)
        return CancelOutcome(kind), (decode_status(job_id, status) if status else None)

    async def append_event(self, event: JobEvent) -> None:
        """Appends one event to its job's events stream (``protocol.events``)."""
        keys, args = append_event_call(event, self.job_ttl_s)
        await self._append_event(keys=keys, args=args)

    async def queued(self, model: str) -> int:
        """Jobs of ``model`` not yet started: the number that back-pressure caps."""
        return int(await self.client.zcard(queued_jobs_key(model)))

    async def queue_depth(self, model: str) -> int:
        """Entries not yet delivered to any worker plus those delivered but not acknowledged."""
        try:
            groups = await self.client.xinfo_groups(jobs_stream_key(model))
        except aioredis.ResponseError:  # no stream yet
            return 0
        for group in groups:
            if group["name"] == CONSUMER_GROUP:
                lag = group.get("lag")
                if lag is None:  # Redis < 7 has no lag: undelivered entries are queued jobs
                    lag = await self.queued(model)
                return int(lag) + int(group.get("pending") or 0)
        return int(await self.client.xlen(jobs_stream_key(model)))

    async def live_workers(self) -> list[WorkerHeartbeat]:
        """Every heartbeat in Redis (any state; stale ones until their TTL removes them)."""
        keys = [key async for key in self.client.scan_iter(match=WORKER_HEARTBEAT_PATTERN, count=100)]
        values = await self.client.mget(keys) if keys else []
        return [WorkerHeartbeat.model_validate_json(value) for value in values if value]
