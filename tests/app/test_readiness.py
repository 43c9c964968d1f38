"""``/readyz`` counts a worker only while it is ready or busy: a starting or draining worker,
or one whose heartbeat is stale, does not make the service ready."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis
from fastapi.testclient import TestClient

from app.main import create_app
from app.routes.health import serving_workers
from app.settings import ApiSettings
from devstack.redis_server import RedisServer
from protocol.keys import worker_heartbeat_key
from protocol.schema import WorkerHeartbeat, WorkerState


def beat(worker: str, state: str, age_s: float = 0.0) -> WorkerHeartbeat:
    return WorkerHeartbeat(
        worker=worker, models=["mnist-unet"], state=WorkerState(state), in_flight=0, at=time.time() - age_s
    )


def test_only_fresh_ready_or_busy_workers_serve() -> None:
    beats = [
        beat("a", "starting"),
        beat("b", "ready"),
        beat("c", "busy"),
        beat("d", "draining"),
        beat("e", "stopped"),
        beat("f", "ready", age_s=20),
    ]
    assert [b.worker for b in serving_workers(beats, time.time(), stale_s=15)] == ["b", "c"]


@pytest.fixture(scope="module")
def own_redis() -> Iterator[RedisServer]:
    server = RedisServer(appendonly=False).start()
    yield server
    server.stop()


def test_readyz_follows_the_published_worker_states(own_redis: RedisServer) -> None:
    client = redis.Redis.from_url(own_redis.url, decode_responses=True)

    def publish(worker: str, state: str) -> None:
        client.set(worker_heartbeat_key(worker), beat(worker, state).model_dump_json(), px=10_000)

    with TestClient(create_app(ApiSettings(redis_url=own_redis.url))) as http:
        assert http.get("/readyz").json()["reason"].startswith("no worker heartbeat")
        publish("w1", "starting")
        publish("w2", "draining")
        not_ready = http.get("/readyz")
        assert not_ready.status_code == 503
        assert not_ready.json()["reason"] in {
            "no worker ready: w1 starting, w2 draining",
            "no worker ready: w2 draining, w1 starting",
        }
        publish("w1", "ready")
        ready = http.get("/readyz")
        assert ready.status_code == 200
        assert [(w["worker"], w["state"]) for w in ready.json()["workers"]] == [("w1", "ready")]
        publish("w1", "busy")
        assert http.get("/readyz").status_code == 200
        publish("w1", "draining")
        assert http.get("/readyz").status_code == 503
    client.close()
