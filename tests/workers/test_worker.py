"""The worker's loop in-process, on the real bundled model and a real Redis: admission counts
rows, every job ends through one path, and the lifecycle ends stopped."""

from __future__ import annotations

import base64
import io
import time
import uuid
from collections.abc import Iterator

import numpy as np
import pytest
import redis
from PIL import Image

from devstack.redis_server import RedisServer
from protocol.keys import STREAM_JOB_FIELD, job_key, jobs_stream_key, worker_heartbeat_key
from protocol.records import record_from_hash, record_to_hash
from protocol.schema import JobRecord, ResolvedConfig, WorkerState
from tests.conftest import resolved_config
from workers.images import to_uint8
from workers.metrics import WorkerMetrics
from workers.sampling.engine import generate
from workers.settings import WorkerSettings
from workers.worker import Worker


@pytest.fixture
def client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """Database 1 of the session's Redis: the session's worker process never sees these jobs."""
    db = redis.Redis(host="127.0.0.1", port=redis_server.port, db=1, decode_responses=True)
    db.flushdb()
    yield db
    db.flushdb()
    db.close()


def enqueue(client: redis.Redis, config: ResolvedConfig, deadline_at: float | None = None) -> str:
    record = JobRecord(
        id=uuid.uuid4().hex,
        status="queued",
        model="mnist-unet",
        config=config,
        created_at=time.time(),
        deadline_at=deadline_at,
    )
    client.hset(job_key(record.id), mapping=record_to_hash(record))  # type: ignore[arg-type]
    client.xadd(jobs_stream_key("mnist-unet"), {STREAM_JOB_FIELD: record.id})
    return record.id


def worker(client: redis.Redis, bundled_model, max_batch: int) -> Worker:  # type: ignore[no-untyped-def]
    settings = WorkerSettings(
        model="mnist-unet", worker_name=f"inproc-{uuid.uuid4().hex[:8]}", max_batch=max_batch, block_ms=50
    )
    return Worker(settings, bundled_model, client, WorkerMetrics())


def test_a_burst_run_admits_by_rows_ends_every_job_and_stops(client, bundled_model) -> None:  # type: ignore[no-untyped-def]
    guided = resolved_config(num_images=2, guidance_scale=2.0, steps=2, seed=3)  # 4 rows
    plain = resolved_config(steps=2, seed=4)  # 1 row
    a, b = enqueue(client, guided), enqueue(client, plain)
    late = enqueue(client, plain, deadline_at=time.time() - 1)
    run = worker(client, bundled_model, max_batch=3)

    run.run(burst=True)

    records = {job_id: record_from_hash(job_id, client.hgetall(job_key(job_id))) for job_id in (a, b, late)}
    assert [records[a].status, records[b].status, records[late].status] == [
        "succeeded",
        "succeeded",
        "failed",
    ]
    error = records[late].error
    assert (
        error is not None and error.type == "DeadlineExceeded" and "before the job started" in error.message
    )
    for job_id, config in ((a, guided), (b, plain)):
        result = records[job_id].result
        assert result is not None and result.worker == run.settings.worker_name
        alone = generate(bundled_model, config)
        for image, state in zip(result.images, alone, strict=True):  # batch mates change <= 1/255
            served = np.asarray(Image.open(io.BytesIO(base64.b64decode(image.png_base64))), dtype=int)
            assert np.abs(served - to_uint8(state.latent).astype(int)).max() <= 1
    # 3 rows: job a (4 rows, admitted alone: one entry per 2 free rows) steps one image at a
    # time; once its first image is done, 1 row is free and b is read and shares the forwards
    registry = run.metrics.registry
    assert registry.get_sample_value("denoise_worker_batch_rows_count") == 4
    assert registry.get_sample_value("denoise_worker_batch_rows_sum") == 2 + 2 + 3 + 3
    finished = "denoise_worker_jobs_finished_total"
    assert registry.get_sample_value(finished, {"status": "succeeded"}) == 2
    assert registry.get_sample_value(finished, {"status": "failed"}) == 1
    assert run.lifecycle.state is WorkerState.STOPPED and run.jobs == {}
    assert not client.exists(worker_heartbeat_key(run.settings.worker_name))
    assert client.xpending(jobs_stream_key("mnist-unet"), "workers")["pending"] == 0  # all acknowledged


def test_a_worker_asked_to_stop_drains_and_takes_no_job(client, bundled_model) -> None:  # type: ignore[no-untyped-def]
    job_id = enqueue(client, resolved_config())
    run = worker(client, bundled_model, max_batch=8)
    run.request_stop()
    run.run()
    assert run.lifecycle.state is WorkerState.STOPPED
    assert record_from_hash(job_id, client.hgetall(job_key(job_id))).status == "queued"
