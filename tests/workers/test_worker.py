"""The worker's loop in-process, on the real bundled models and a real Redis: admission counts
rows, every job ends through one path, the lifecycle ends stopped, and a worker serving two
models reads both streams and steps each model once per loop."""

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
from workers.models.loading import LoadedModel
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
        model=config.model,
        config=config,
        created_at=time.time(),
        deadline_at=deadline_at,
    )
    client.hset(job_key(record.id), mapping=record_to_hash(record))  # type: ignore[arg-type]
    client.xadd(jobs_stream_key(config.model), {STREAM_JOB_FIELD: record.id})
    return record.id


def worker(client: redis.Redis, models: list[LoadedModel], max_batch: int) -> Worker:
    settings = WorkerSettings(
        models=[model.info.name for model in models],
        worker_name=f"inproc-{uuid.uuid4().hex[:8]}",
        max_batch=max_batch,
        block_ms=50,
    )
    return Worker(settings, models, client, WorkerMetrics())


def status(client: redis.Redis, job_id: str) -> str:
    return record_from_hash(job_id, client.hgetall(job_key(job_id))).status


def test_a_burst_run_admits_by_rows_ends_every_job_and_stops(client, bundled_model) -> None:  # type: ignore[no-untyped-def]
    guided = resolved_config(num_images=2, guidance_scale=2.0, steps=2, seed=3)  # 4 rows
    plain = resolved_config(steps=2, seed=4)  # 1 row
    a, b = enqueue(client, guided), enqueue(client, plain)
    late = enqueue(client, plain, deadline_at=time.time() - 1)
    run = worker(client, [bundled_model], max_batch=3)

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
    registry, unet = run.metrics.registry, {"model": "mnist-unet"}
    assert registry.get_sample_value("denoise_worker_batch_rows_count", unet) == 4
    assert registry.get_sample_value("denoise_worker_batch_rows_sum", unet) == 2 + 2 + 3 + 3
    finished = "denoise_worker_jobs_finished_total"
    assert registry.get_sample_value(finished, {**unet, "status": "succeeded"}) == 2
    assert registry.get_sample_value(finished, {**unet, "status": "failed"}) == 1
    assert run.lifecycle.state is WorkerState.STOPPED and not run.in_flight()
    assert not client.exists(worker_heartbeat_key(run.settings.worker_name))
    assert client.xpending(jobs_stream_key("mnist-unet"), "workers")["pending"] == 0  # all acknowledged


def test_a_worker_asked_to_stop_drains_and_takes_no_job(client, bundled_model) -> None:  # type: ignore[no-untyped-def]
    job_id = enqueue(client, resolved_config())
    run = worker(client, [bundled_model], max_batch=8)
    run.request_stop()
    run.run()
    assert run.lifecycle.state is WorkerState.STOPPED
    assert status(client, job_id) == "queued"


def started(run: Worker) -> Worker:
    """``run`` as its loop leaves it before the first poll: models registered, state ready."""
    for served in run.served:
        served.register()
    run.lifecycle.to(WorkerState.READY)
    return run


def loop_once(run: Worker) -> int:
    admitted = run.poll()
    run.tick()
    run.finish()
    return admitted


def test_two_models_one_worker_both_streams_each_image_as_alone(client, bundled_model, gauss_model) -> None:  # type: ignore[no-untyped-def]
    unet = resolved_config(steps=3, seed=5, guidance_scale=2.0)
    gauss = resolved_config(model="mnist-gauss", steps=4, seed=6, class_label=3, num_images=2)
    jobs = {enqueue(client, unet): unet, enqueue(client, gauss): gauss, enqueue(client, unet): unet}
    run = worker(client, [bundled_model, gauss_model], max_batch=32)
    assert [served.stream for served in run.served] == ["denoise:jobs:mnist-unet", "denoise:jobs:mnist-gauss"]

    run.run(burst=True)

    models = {"mnist-unet": bundled_model, "mnist-gauss": gauss_model}
    for job_id, config in jobs.items():
        record = record_from_hash(job_id, client.hgetall(job_key(job_id)))
        assert record.status == "succeeded" and record.result is not None, record
        assert record.result.config.model == config.model
        alone = generate(models[config.model], config)
        for image, state in zip(record.result.images, alone, strict=True):
            served = np.asarray(Image.open(io.BytesIO(base64.b64decode(image.png_base64))), dtype=int)
            assert np.abs(served - to_uint8(state.latent).astype(int)).max() <= 1
    registry = run.metrics.registry
    forwards = {
        name: registry.get_sample_value("denoise_worker_forward_seconds_count", {"model": name})
        for name in models
    }
    assert forwards == {"mnist-unet": 3, "mnist-gauss": 4}  # each model its own forwards, its steps
    for name in models:
        assert client.xpending(jobs_stream_key(name), "workers")["pending"] == 0


def test_a_long_job_on_one_model_does_not_delay_a_short_one_on_another(  # type: ignore[no-untyped-def]
    client, bundled_model, gauss_model
) -> None:
    run = started(worker(client, [bundled_model, gauss_model], max_batch=32))
    try:
        long = enqueue(client, resolved_config(steps=200, seed=1))
        assert loop_once(run) == 1  # idle: one blocking read over both streams takes it
        short = enqueue(client, resolved_config(model="mnist-gauss", steps=3, seed=2))
        loops = 0
        while status(client, short) != "succeeded":
            loop_once(run)
            loops += 1
            assert loops <= 10, "the short job waits for the long one"
        # read and three steps, one per loop, the third loop also stores it: 3 loops, and the
        # long job took exactly one step in each of them, besides the one it took alone
        assert loops == 3
        unet, gauss = run.served
        assert unet.jobs[long].progress().step == 4 and status(client, long) == "running"
        assert gauss.jobs == {}
    finally:
        run.request_stop()
        run.lifecycle.stop()
