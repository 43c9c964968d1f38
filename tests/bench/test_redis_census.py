"""The soak's Redis census: bytes and keys by kind, and per-job keys that would never expire."""

from __future__ import annotations

import redis

from bench.redis_census import census, kind_of
from devstack.redis_server import RedisServer
from protocol.keys import job_events_key, job_key, worker_heartbeat_key


def test_kinds_are_the_second_component_of_the_service_s_key_names() -> None:
    assert kind_of(job_key("abc")) == "job"
    assert kind_of(job_events_key("abc")) == "job-events"
    assert kind_of(worker_heartbeat_key("w-1")) == "worker"
    assert kind_of("somebody:else") == "(other)"


def test_a_per_job_key_without_a_ttl_is_counted(redis_server: RedisServer) -> None:
    client = redis.Redis.from_url(redis_server.url.rsplit("/", 1)[0] + "/13")
    client.flushdb()
    try:
        client.set(job_key("expires"), "x" * 1000, ex=60)
        client.xadd(job_events_key("expires"), {"event": "{}"})
        client.expire(job_events_key("expires"), 60)
        first = census(client)
        assert first["per_job_keys_without_ttl"] == 0
        assert first["by_kind"]["job"]["keys"] == 1 and first["by_kind"]["job"]["bytes"] >= 1000
        assert first["by_kind"]["job-events"]["keys"] == 1

        client.set(job_key("leaks"), "x")
        leaked = census(client)
        assert leaked["per_job_keys_without_ttl"] == 1
        assert leaked["by_kind"]["job"] == {
            "keys": 2,
            "bytes": leaked["by_kind"]["job"]["bytes"],
            "without_ttl": 1,
        }
    finally:
        client.flushdb()
