"""The rate limiter's token bucket script against a real redis-server."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis

from app.access import TAKE_TOKEN_SCRIPT
from devstack.redis_server import RedisServer
from protocol.keys import rate_limit_key


@pytest.fixture
def client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    yield client
    client.close()


def test_token_bucket_allows_a_burst_then_refills_at_the_rate(client: redis.Redis) -> None:
    take = client.register_script(TAKE_TOKEN_SCRIPT)
    key = rate_limit_key("script-bucket")
    replies = [take(keys=[key], args=[2, 3]) for _ in range(4)]
    assert [int(r[0]) for r in replies] == [1, 1, 1, 0]
    assert 0.3 < float(replies[3][1]) <= 0.5  # one token every 0.5 s
    time.sleep(float(replies[3][1]) + 0.05)
    assert int(take(keys=[key], args=[2, 3])[0]) == 1
    assert 0 < client.ttl(key) <= 3
    client.delete(key)
