"""The API's side of Redis: enqueue jobs, read and cancel them, list models and workers."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import redis.asyncio as aioredis

from app import job_scripts
from app.contract import (
    CONSUMER_GROUP,
    EVENTS_CHANNEL,
    MODELS_KEY,
    WORKER_HEARTBEAT_PATTERN,
    JobRecord,
    ModelInfo,
    ResolvedConfig,
    WorkerHeartbeat,
    job_key,
    jobs_stream_key,
    record_from_hash,
    record_to_hash,
)


class JobQueue:
    def __init__(self, client: aioredis.Redis, job_ttl_s: int, models_cache_s: float) -> None:
        self.client = client
        self.job_ttl_s = job_ttl_s
        self.models_cache_s = models_cache_s
        self._models: dict[str, ModelInfo] = {}
        self._models_read_at = 0.0
        self._cancel = client.register_script(job_scripts.CANCEL)

    async def models(self) -> dict[str, ModelInfo]:
        """Models that workers have registered (cached for ``models_cache_s``)."""
        now = time.monotonic()
        if now - self._models_read_at > self.models_cache_s or not self._models:
            raw = await self.client.hgetall(MODELS_KEY)
            self._models = {str(name): ModelInfo.model_validate_json(value) for name, value in raw.items()}
            self._models_read_at = now
        return self._models

    async def submit(self, config: ResolvedConfig, timeout_s: float) -> JobRecord:
        """Stores the job record and appends its id to the model's stream, atomically."""
        now = time.time()
        record = JobRecord(
            id=uuid.uuid4().hex,
            status="queued",
            model=config.model,
            config=config,
            created_at=now,
            deadline_at=now + timeout_s,
        )
        pipe = self.client.pipeline(transaction=True)
        fields: dict[Any, Any] = record_to_hash(record)
        pipe.hset(job_key(record.id), mapping=fields)
        pipe.expire(job_key(record.id), self.job_ttl_s)
        pipe.xadd(jobs_stream_key(config.model), {"job": record.id})
        await pipe.execute()
        return record

    async def get(self, job_id: str) -> JobRecord | None:
        fields = await self.client.hgetall(job_key(job_id))
        return record_from_hash(fields) if fields else None

    async def cancel(self, job_id: str) -> str:
        """'cancelled', 'cancelling', 'missing', or 'already <status>' for a finished job."""
        outcome = await self._cancel(
            keys=[job_key(job_id)], args=[str(self.job_ttl_s), json.dumps(time.time())]
        )
        if outcome == "cancelled":
            await self.client.publish(EVENTS_CHANNEL, job_id)
        if outcome.startswith("already:"):
            return f"already {json.loads(outcome.removeprefix('already:'))}"
        return str(outcome)

    async def queue_depth(self, model: str) -> int:
        """Entries not yet delivered to any worker plus those delivered but not acknowledged."""
        try:
            groups = await self.client.xinfo_groups(jobs_stream_key(model))
        except aioredis.ResponseError:  # no stream yet
            return 0
        for group in groups:
            if group["name"] == CONSUMER_GROUP:
                lag = group.get("lag") or 0
                return int(lag) + int(group.get("pending") or 0)
        return int(await self.client.xlen(jobs_stream_key(model)))

    async def live_workers(self) -> list[WorkerHeartbeat]:
        beats = []
        async for key in self.client.scan_iter(match=WORKER_HEARTBEAT_PATTERN, count=100):
            value = await self.client.get(key)
            if value:
                beats.append(WorkerHeartbeat.model_validate_json(value))
        return beats
