"""The request's webhook fields, in-process against a redis-server of its own: a target that
resolves to a private, loopback, link-local or multicast address is a 422 naming ``webhook`` and
nothing is enqueued; an accepted webhook is kept on the job's record, not in its config."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator

import pytest
import redis
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import ApiSettings
from devstack.redis_server import RedisServer
from protocol.keys import MODELS_KEY, WEBHOOKS_STREAM, job_key, jobs_stream_key, worker_heartbeat_key
from tests.app.test_catalog import beat, info

MODEL = "m-hooks"
TINY = {"class_label": 1, "steps": 2}
ASYNC = {"Prefer": "respond-async"}
SECRET = "whsec_" + base64.b64encode(os.urandom(32)).decode()


@pytest.fixture(scope="module")
def own_redis() -> Iterator[redis.Redis]:
    server = RedisServer(appendonly=False).start()
    client = redis.Redis.from_url(server.url, decode_responses=True)
    client.hset(MODELS_KEY, MODEL, info(MODEL).model_dump_json())
    client.set(worker_heartbeat_key("w-hooks"), beat("w-hooks", [MODEL]).model_dump_json(), px=600_000)
    yield client
    client.close()
    server.stop()


def api(client: redis.Redis, **settings: object) -> TestClient:
    url = f"redis://127.0.0.1:{client.connection_pool.connection_kwargs['port']}/0"
    return TestClient(create_app(ApiSettings(redis_url=url, default_model=MODEL, **settings)))  # type: ignore[arg-type]


def nothing_enqueued(client: redis.Redis) -> bool:
    return (
        client.xlen(jobs_stream_key(MODEL)) == 0
        and client.xlen(WEBHOOKS_STREAM) == 0
        and not list(client.scan_iter(match=job_key("*")))
    )


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://127.0.0.1:9000/hook", "127.0.0.1, a loopback address"),
        ("http://localhost/hook", "a loopback address"),
        ("https://[::1]/hook", "::1, a loopback address"),
        ("http://10.0.0.7/hook", "10.0.0.7, a private address"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254, a link-local address"),
        ("http://239.1.2.3/hook", "239.1.2.3, a multicast address"),
    ],
)
def test_a_private_target_is_a_422_naming_webhook_and_nothing_is_enqueued(
    own_redis: redis.Redis, url: str, why: str
) -> None:
    with api(own_redis, webhook_secret=SECRET) as http:
        response = http.post("/v1/generations", json={**TINY, "webhook": url}, headers=ASYNC)
    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "webhook"] and why in error["msg"]
    assert nothing_enqueued(own_redis)


def test_other_bad_webhook_fields_are_422s(own_redis: redis.Redis) -> None:
    with api(own_redis, webhook_secret=SECRET) as http:
        cases = [
            (
                {"webhook": "ftp://example.com/x"},
                ["body", "webhook"],
                "URL scheme should be 'http' or 'https'",
            ),
            ({"webhook": "https://e.com/" + "a" * 2000}, ["body", "webhook"], "at most 2000 characters"),
            ({"webhook_events": ["completed"]}, ["body", "webhook_events"], "webhook is not"),
            (
                {"webhook": "https://93.184.216.34/", "webhook_events": ["done"]},
                ["body", "webhook_events", 0],
                "",
            ),
            ({"webhook": "https://93.184.216.34/", "webhook_events": []}, ["body", "webhook_events"], ""),
        ]
        for extra, loc, message in cases:
            response = http.post("/v1/generations", json={**TINY, **extra}, headers=ASYNC)
            assert response.status_code == 422, (extra, response.text)
            error = response.json()["detail"][0]
            assert error["loc"] == loc and message in error["msg"], (extra, error)
    with api(own_redis) as http:  # no signing secret: no webhooks
        response = http.post(
            "/v1/generations", json={**TINY, "webhook": "https://93.184.216.34/"}, headers=ASYNC
        )
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["body", "webhook"]
        assert "webhooks are off" in response.json()["detail"][0]["msg"]
    assert nothing_enqueued(own_redis)


def test_an_accepted_webhook_is_kept_on_the_record_not_in_the_config(own_redis: redis.Redis) -> None:
    body = {
        **TINY,
        "webhook": "https://93.184.216.34:8443/hooks?k=1",
        "webhook_events": ["progress", "start", "progress"],
    }
    with api(own_redis, webhook_secret=SECRET, webhook_progress_interval_s=2.5) as http:
        response = http.post("/v1/generations", json=body, headers=ASYNC)
    assert response.status_code == 202, response.text
    job = response.json()
    assert "webhook" not in job["config"]
    stored = json.loads(own_redis.hget(job_key(job["id"]), "webhook") or "null")
    assert stored == {
        "url": "https://93.184.216.34:8443/hooks?k=1",
        "events": ["progress", "start"],
        "progress_interval_s": 2.5,
    }
    plain = api(own_redis, webhook_secret=SECRET)
    with plain as http:
        job = http.post("/v1/generations", json=TINY, headers=ASYNC).json()
    assert own_redis.hget(job_key(job["id"]), "webhook") == "null"
