"""Job-state transitions against a real Redis: results are written once, finished jobs never restart."""

from __future__ import annotations

import json
import time
import uuid

import redis

from protocol.keys import job_key
from protocol.records import record_from_hash, record_to_hash
from protocol.schema import GeneratedImage, JobError, JobRecord, JobResult, Progress, Timings
from tests.conftest import resolved_config
from workers.job_store import StreamReader, WorkerJobStore

CONFIG = resolved_config(model="m")


def queued_job(client: redis.Redis) -> str:
    record = JobRecord(id=uuid.uuid4().hex, status="queued", model="m", config=CONFIG, created_at=time.time())
    client.hset(job_key(record.id), mapping=record_to_hash(record))  # type: ignore[arg-type]
    return record.id


def result(worker: str) -> JobResult:
    image = GeneratedImage(
        index=0, seed=0, class_label=1, width=1, height=1, png_base64=worker, noise_estimate=0.0
    )
    timings = Timings(queue_wait_ms=0, inference_ms=1, step_ms_mean=1, encode_ms=0, total_ms=1)
    return JobResult(images=[image], config=CONFIG, timings=timings, worker=worker)


def test_a_result_is_written_once(redis_client: redis.Redis) -> None:
    job_id = queued_job(redis_client)
    first = WorkerJobStore(redis_client, "m", "w1", job_ttl_s=60)
    second = WorkerJobStore(redis_client, "m", "w2", job_ttl_s=60)
    assert first.start(job_id) is not None
    assert second.start(job_id) is not None  # a redelivery may start it again...
    assert first.succeed(job_id, result("w1"), Progress(step=2, total=2)) is True
    assert second.succeed(job_id, result("w2"), Progress(step=2, total=2)) is False  # ...but not store twice
    assert second.fail(job_id, JobError(type="X", message="late")) is False
    record = record_from_hash(job_id, redis_client.hgetall(job_key(job_id)))
    assert record.status == "succeeded" and record.result is not None
    assert record.result.worker == "w1" and record.attempts == 2
    assert 0 < redis_client.ttl(job_key(job_id)) <= 60


def test_a_finished_or_missing_job_is_not_started(redis_client: redis.Redis) -> None:
    store = WorkerJobStore(redis_client, "m", "w", job_ttl_s=60)
    job_id = queued_job(redis_client)
    redis_client.hset(job_key(job_id), "status", json.dumps("cancelled"))
    assert store.start(job_id) is None
    assert store.start(uuid.uuid4().hex) is None


def two_streams(client: redis.Redis) -> tuple[WorkerJobStore, WorkerJobStore]:
    suffix = uuid.uuid4().hex[:8]
    stores = (
        WorkerJobStore(client, f"m1-{suffix}", "w", job_ttl_s=60),
        WorkerJobStore(client, f"m2-{suffix}", "w", job_ttl_s=60),
    )
    for store in stores:
        store.ensure_group()
    return stores


def test_new_entries_of_every_stream_and_cancel_flags_are_read_in_one_round_trip(
    redis_client: redis.Redis,
) -> None:
    one, two = two_streams(redis_client)
    reader = StreamReader(redis_client, "w")
    a, b = queued_job(redis_client), queued_job(redis_client)
    redis_client.hset(job_key(b), "cancel_requested", "true")
    for job_id in (a, b, "c" * 32):
        redis_client.xadd(one.stream, {"job": job_id})
    redis_client.xadd(two.stream, {"job": "d" * 32})
    calls_before = redis_client.info("commandstats").get("cmdstat_xreadgroup", {}).get("calls", 0)
    entries, cancelled = reader.read_new_and_cancel_flags({one.stream: 2, two.stream: 5}, [a, b])
    assert {stream: [e.job_id for e in got] for stream, got in entries.items()} == {
        one.stream: [a, b],
        two.stream: ["d" * 32],
    }
    assert cancelled == {b}
    calls = redis_client.info("commandstats")["cmdstat_xreadgroup"]["calls"]
    assert calls - calls_before == 2  # one read per stream with room, in the same pipeline
    entries, cancelled = reader.read_new_and_cancel_flags({one.stream: 0, two.stream: 0}, [a])
    assert entries == {} and cancelled == set()  # no room: reads no entry
    entries, _ = reader.read_new_and_cancel_flags({one.stream: 5}, [])
    assert [e.job_id for e in entries[one.stream]] == ["c" * 32]


def test_an_idle_read_blocks_on_every_stream_and_wakes_for_any(redis_client: redis.Redis) -> None:
    one, two = two_streams(redis_client)
    reader = StreamReader(redis_client, "w")
    started = time.monotonic()
    assert reader.read_new({one.stream: 4, two.stream: 4}, block_ms=100) == {}
    assert time.monotonic() - started >= 0.09
    redis_client.xadd(two.stream, {"job": "e" * 32})
    got = reader.read_new({one.stream: 4, two.stream: 4}, block_ms=5000)
    assert list(got) == [two.stream] and [e.job_id for e in got[two.stream]] == ["e" * 32]


def test_a_pending_entry_trimmed_from_the_stream_is_acknowledged_not_run(redis_client: redis.Redis) -> None:
    """The submit script trims entries older than the job TTL; one a dead worker had read is
    acknowledged at the next reclaim instead of coming back forever without its job."""
    store = WorkerJobStore(redis_client, f"m-{uuid.uuid4().hex[:8]}", "w", job_ttl_s=60)
    store.ensure_group()
    redis_client.xadd(store.stream, {"job": uuid.uuid4().hex})
    live_job = uuid.uuid4().hex
    redis_client.xadd(store.stream, {"job": live_job})
    read = StreamReader(redis_client, "dead-worker").read_new({store.stream: 2}, None)[store.stream]
    redis_client.xdel(store.stream, read[0].entry_id)  # as XTRIM MINID does to an old entry
    time.sleep(0.01)
    reclaimed = store.reclaim(count=10, lease_s=0)
    assert [entry.job_id for entry in reclaimed] == [live_job]
    pending = redis_client.xpending_range(store.stream, "workers", min="-", max="+", count=10)
    assert [p["message_id"] for p in pending] == [read[1].entry_id]
