"""Entries no worker can run are dead-lettered, and the worker lives on (default test run)."""

from __future__ import annotations

import json
import pickle
import time
import uuid

import httpx
import redis

from protocol.keys import dead_letter_stream_key, job_key, jobs_stream_key

STREAM = jobs_stream_key("mnist-unet")
DEAD = dead_letter_stream_key("mnist-unet")


def test_malformed_pickled_and_corrupt_entries_are_dead_lettered_and_the_worker_lives(
    client: httpx.Client, redis_client: redis.Redis
) -> None:
    raw = redis.Redis(
        host=redis_client.connection_pool.connection_kwargs["host"],
        port=redis_client.connection_pool.connection_kwargs["port"],
    )  # bytes in, bytes out: what an attacker or a buggy producer could write
    before = redis_client.xlen(DEAD)
    corrupt_job = uuid.uuid4().hex
    redis_client.hset(job_key(corrupt_job), mapping={"status": json.dumps("queued"), "config": "{not json"})
    injected = [
        raw.xadd(STREAM, {b"job": pickle.dumps({"steps": 5})}),  # a pickle: never unpickled
        raw.xadd(STREAM, {b"payload": b"\x80\x04\x95 not a job"}),
        raw.xadd(STREAM, {b"job": b"../../etc/passwd"}),
        raw.xadd(STREAM, {b"job": corrupt_job.encode()}),
    ]

    # the worker is alive and serves the next request
    body = client.post("/v1/generations", json={"class_label": 2, "steps": 4, "seed": 1}).json()
    assert body["status"] == "succeeded"

    deadline = time.monotonic() + 10
    while redis_client.xlen(DEAD) < before + len(injected) and time.monotonic() < deadline:
        time.sleep(0.05)
    dead = redis_client.xrange(DEAD)[before:]
    assert sorted(entry["entry"] for _id, entry in dead) == sorted(i.decode() for i in injected)
    reasons = {entry["entry"]: entry["reason"] for _id, entry in dead}
    assert "malformed stream entry" in reasons[injected[0].decode()]
    assert "not a valid job" in reasons[injected[3].decode()]
    # acknowledged: nothing of them is left pending for another worker
    pending = redis_client.xpending_range(STREAM, "workers", min="-", max="+", count=100)
    assert not {p["message_id"] for p in pending} & {i.decode() for i in injected}
    assert json.loads(redis_client.hget(job_key(corrupt_job), "status") or "null") == "failed"
