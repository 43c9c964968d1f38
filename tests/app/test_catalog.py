"""The API offers the models that a live worker serves: registered models filtered by fresh,
ready or busy heartbeats; a registered model without one is a 503 with Retry-After, an unknown
one a 422 naming the live ones. Heartbeats are published by hand here (no worker process)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis
from fastapi.testclient import TestClient

from app.job_queue import Catalog
from app.main import create_app
from app.settings import ApiSettings
from devstack.redis_server import RedisServer
from protocol.keys import MODELS_KEY, jobs_stream_key, worker_heartbeat_key
from protocol.schema import ModelInfo, WorkerHeartbeat, WorkerState

TINY = {"class_label": 1, "steps": 2}
ASYNC = {"Prefer": "respond-async"}


def info(name: str) -> ModelInfo:
    return ModelInfo(
        name=name,
        conditioning="class_label",
        num_classes=10,
        image_size=28,
        channels=1,
        training_noise_schedule="squaredcos_cap_v2",
        num_train_timesteps=1000,
        prediction_type="v_prediction",
    )


def beat(worker: str, models: list[str], state: str = "ready", age_s: float = 0.0) -> WorkerHeartbeat:
    return WorkerHeartbeat(
        worker=worker, models=models, state=WorkerState(state), in_flight=0, at=time.time() - age_s
    )


def test_served_models_are_registered_ones_named_by_a_serving_worker() -> None:
    registered = {name: info(name) for name in ("a", "b", "c", "d")}
    beats = [
        beat("w1", ["a", "x"]),  # x: named but never registered
        beat("w2", ["b"], state="draining"),
        beat("w3", ["c"], age_s=20),
        beat("w4", ["a", "d"], state="busy"),
    ]
    catalog = Catalog.of(registered, beats, time.time(), stale_s=15)
    assert sorted(catalog.served) == ["a", "d"]
    assert catalog.offered(require_live_worker=True) is catalog.served
    assert catalog.offered(require_live_worker=False) is catalog.registered


@pytest.fixture(scope="module")
def own_redis() -> Iterator[redis.Redis]:
    server = RedisServer(appendonly=False).start()
    client = redis.Redis.from_url(server.url, decode_responses=True)
    client.hset(MODELS_KEY, mapping={name: info(name).model_dump_json() for name in ("m-one", "m-two")})
    yield client
    client.close()
    server.stop()


def publish(client: redis.Redis, heartbeat: WorkerHeartbeat) -> None:
    client.set(worker_heartbeat_key(heartbeat.worker), heartbeat.model_dump_json(), px=10_000)


def api(client: redis.Redis, **settings: object) -> TestClient:
    url = f"redis://127.0.0.1:{client.connection_pool.connection_kwargs['port']}/0"
    return TestClient(create_app(ApiSettings(redis_url=url, default_model="m-one", **settings)))


def test_only_live_models_are_offered_and_a_dead_one_is_a_503_naming_it(own_redis: redis.Redis) -> None:
    publish(own_redis, beat("w-one", ["m-one"]))
    publish(own_redis, beat("w-two", ["m-two"], state="draining"))
    with api(own_redis, models_cache_s=0, no_worker_retry_after_s=7) as http:
        assert [m["name"] for m in http.get("/v1/models").json()] == ["m-one"]
        entries = own_redis.xlen(jobs_stream_key("m-two"))
        refused = http.post("/v1/generations", json={"model": "m-two", **TINY}, headers=ASYNC)
        assert refused.status_code == 503 and refused.headers["retry-after"] == "7"
        assert "'m-two' has no live worker" in refused.json()["detail"]
        assert own_redis.xlen(jobs_stream_key("m-two")) == entries  # nothing enqueued
        unknown = http.post("/v1/generations", json={"model": "m-three", **TINY}, headers=ASYNC)
        assert unknown.status_code == 422
        assert unknown.json()["detail"][0]["msg"] == "unknown model 'm-three'; available: m-one"
        assert http.post("/v1/generations", json=TINY, headers=ASYNC).status_code == 202  # m-one

        publish(own_redis, beat("w-one", ["m-one"], state="draining"))
        assert http.get("/v1/models").json() == []
        nobody = http.post("/v1/generations", json=TINY, headers=ASYNC)
        assert nobody.status_code == 503 and "'m-one' has no live worker" in nobody.json()["detail"]
        assert 'denoise_api_rejected_total{reason="no_worker"} 2.0' in http.get("/metrics").text

    with api(own_redis, require_live_worker=False) as http:  # workers that scale from zero
        assert [m["name"] for m in http.get("/v1/models").json()] == ["m-one", "m-two"]
        queued = http.post("/v1/generations", json={"model": "m-two", **TINY}, headers=ASYNC)
        assert queued.status_code == 202 and queued.json()["status"] == "queued"
    own_redis.delete(worker_heartbeat_key("w-one"), worker_heartbeat_key("w-two"))


def test_the_catalog_is_read_once_per_cache_window(own_redis: redis.Redis) -> None:
    publish(own_redis, beat("w-cache", ["m-one", "m-two"]))
    with api(own_redis, models_cache_s=60) as http:
        calls = lambda: own_redis.info("commandstats").get("cmdstat_hgetall", {}).get("calls", 0)  # noqa: E731
        assert len(http.get("/v1/models").json()) == 2
        before = calls()
        for _ in range(5):
            assert len(http.get("/v1/models").json()) == 2
        assert calls() == before
        own_redis.delete(worker_heartbeat_key("w-cache"))
        assert len(http.get("/v1/models").json()) == 2  # until the window ends
