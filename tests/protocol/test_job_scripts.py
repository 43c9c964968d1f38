"""The job scripts against a real redis-server: transitions, the queued count, idempotency."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
import redis

from devstack.redis_server import RedisServer
from protocol import job_scripts
from protocol.keys import idempotency_key, job_key, jobs_stream_key, queued_jobs_key

MODEL = "scripts-test-model"


@pytest.fixture
def client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    yield client
    for pattern in ("denoise:*scripts-test*", "denoise:*script-*"):
        for key in client.scan_iter(match=pattern):
            client.delete(key)
    client.close()


def submit(
    client: redis.Redis,
    job_id: str,
    cap: int = 10,
    idem: str | None = None,
    fingerprint: str = "",
    now: float | None = None,
    ttl: int = 600,
) -> list:  # type: ignore[type-arg]
    keys = [job_key(job_id), jobs_stream_key(MODEL), queued_jobs_key(MODEL)]
    if idem is not None:
        keys.append(idempotency_key("script-test", idem))
    fields = {"id": job_id, "status": "queued", "model": MODEL, "attempts": 0}
    args: list[object] = [job_id, repr(now or time.time()), ttl, cap, 60, fingerprint]
    for name, value in fields.items():
        args.extend([name, json.dumps(value)])
    return client.register_script(job_scripts.SUBMIT)(keys=keys, args=args)  # type: ignore[no-any-return]


def queued(client: redis.Redis) -> int:
    return int(client.zcard(queued_jobs_key(MODEL)))


def test_every_way_out_of_queued_counts_once(client: redis.Redis) -> None:
    start = client.register_script(job_scripts.START)
    cancel = client.register_script(job_scripts.CANCEL)
    finish = client.register_script(job_scripts.FINISH)
    for n in range(4):
        assert submit(client, f"script-{n}") == ["created", f"script-{n}", n + 1]
    assert client.xlen(jobs_stream_key(MODEL)) == 4 and queued(client) == 4
    assert json.loads(client.hget(job_key("script-0"), "queued_set")) == queued_jobs_key(MODEL)

    assert start(keys=[job_key("script-0")], args=['"w"', "1.0"]) == 1
    assert queued(client) == 3
    assert start(keys=[job_key("script-0")], args=['"w"', "2.0"]) == 2  # redelivered: no second count
    assert queued(client) == 3
    assert cancel(keys=[job_key("script-1")], args=["60", "3.0"]) == "cancelled"
    assert queued(client) == 2
    assert finish(keys=[job_key("script-2")], args=["60", "status", '"failed"']) == 1
    assert queued(client) == 1
    assert finish(keys=[job_key("script-0")], args=["60", "status", '"succeeded"']) == 1
    assert queued(client) == 1  # script-3 is still queued
    assert cancel(keys=[job_key("script-1")], args=["60", "4.0"]) == 'already:"cancelled"'
    assert queued(client) == 1


def test_stream_entries_older_than_the_ttl_are_trimmed_on_submit(client: redis.Redis) -> None:
    for n in range(3):
        submit(client, f"script-{n}")
    assert client.xlen(jobs_stream_key(MODEL)) == 3
    time.sleep(1.1)
    submit(client, "script-3", ttl=1)  # the three older ones are past a 1 s TTL
    assert [fields["job"] for _, fields in client.xrange(jobs_stream_key(MODEL))] == ["script-3"]


def test_the_cap_refuses_without_enqueueing(client: redis.Redis) -> None:
    for n in range(3):
        submit(client, f"script-{n}", cap=3)
    assert submit(client, "script-3", cap=3) == ["full", 3]
    assert not client.exists(job_key("script-3"))
    assert client.xlen(jobs_stream_key(MODEL)) == 3


def test_queued_members_older_than_a_job_record_are_dropped(client: redis.Redis) -> None:
    """A queued job whose record expired (never started) must not hold a place forever."""
    submit(client, "script-old", now=time.time() - 700, ttl=600)
    assert queued(client) == 1
    assert submit(client, "script-new", cap=1)[0] == "created"
    assert queued(client) == 1


def test_idempotency_key_replays_or_refuses(client: redis.Redis) -> None:
    assert submit(client, "script-a", idem="k1", fingerprint="f1")[0] == "created"
    outcome, job_id, fields = submit(client, "script-b", idem="k1", fingerprint="f1")
    assert (outcome, job_id) == ("replay", "script-a")
    assert dict(zip(fields[::2], fields[1::2], strict=True))["id"] == '"script-a"'
    assert submit(client, "script-c", idem="k1", fingerprint="f2") == ["conflict", "script-a"]
    assert client.xlen(jobs_stream_key(MODEL)) == 1 and not client.exists(job_key("script-b"))
    assert 0 < client.ttl(idempotency_key("script-test", "k1")) <= 60
    # once the job's record is gone the key starts afresh
    client.delete(job_key("script-a"))
    assert submit(client, "script-d", idem="k1", fingerprint="f2")[0] == "created"


def test_a_replay_is_answered_even_when_the_queue_is_full(client: redis.Redis) -> None:
    submit(client, "script-a", cap=1, idem="k2", fingerprint="f")
    assert submit(client, "script-b", cap=1, idem="k2", fingerprint="f")[0] == "replay"
    assert submit(client, "script-c", cap=1)[0] == "full"


def test_a_mangled_queued_set_field_does_not_stop_a_job(client: redis.Redis) -> None:
    submit(client, "script-mangled")
    client.hset(job_key("script-mangled"), "queued_set", "\x80not json")
    start = client.register_script(job_scripts.START)
    assert start(keys=[job_key("script-mangled")], args=['"w"', "1.0"]) == 1
