"""One worker serves several models, each on its own stream, fairly; the API offers only the
models a live worker serves.

The session's worker serves ``mnist-unet`` and ``mnist-gauss``. A third model, ``gauss-copy``
(an operator registry file naming the ``mnist-gauss`` folder again), gets a worker of its own
that the test kills.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import redis

from devstack.redis_server import RedisServer
from protocol.keys import MODELS_KEY, dead_letter_stream_key, jobs_stream_key, queued_jobs_key
from protocol.schema import TERMINAL_STATUSES
from tests.conftest import SESSION_MODELS, running_worker, wait_until
from tests.golden.requests import GOLDEN_REQUESTS, load_hashes, request_key
from workers.models.registry import BUNDLED_REGISTRY

ASYNC = {"Prefer": "respond-async"}
COPY = "gauss-copy"


def finished(client: httpx.Client, job_id: str, timeout_s: float = 300) -> dict:  # type: ignore[type-arg]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        body = client.get(f"/v1/jobs/{job_id}").json()
        if body["status"] in TERMINAL_STATUSES:
            return body  # type: ignore[no-any-return]
        time.sleep(0.05)
    raise TimeoutError(job_id)


def png_sha256(body: dict) -> list[str]:  # type: ignore[type-arg]
    return [hashlib.sha256(base64.b64decode(image["png_base64"])).hexdigest() for image in body["images"]]


def forwards(metrics_url: str) -> dict[str, float]:
    """Forwards so far, by model (the worker's ``denoise_worker_forward_seconds_count``)."""
    counts = {}
    for line in httpx.get(metrics_url).text.splitlines():
        if line.startswith('denoise_worker_forward_seconds_count{model="'):
            series, value = line.rsplit(" ", 1)
            counts[series.split('"')[1]] = float(value)
    return counts


def model_names(client: httpx.Client) -> list[str]:
    return [model["name"] for model in client.get("/v1/models").json()]


def test_one_worker_serves_both_models_and_says_so(
    client: httpx.Client, worker_process: dict[str, str]
) -> None:
    workers = client.get("/readyz").json()["workers"]
    assert [w["models"] for w in workers if w["worker"] == worker_process["name"]] == [SESSION_MODELS]
    assert model_names(client) == sorted(SESSION_MODELS)


def test_requests_for_both_models_at_once_give_each_its_golden_bytes(
    client: httpx.Client, worker_process: dict[str, str]
) -> None:
    """Two clients, one per model, each sending golden requests one after another: both models'
    jobs are in flight together, each model's alone in its engine, so every image is bit for bit
    what it is alone (jobs of the SAME model sharing forwards may differ by 1/255:
    test_batching.py)."""
    expected = load_hashes()
    pinned = sorted({str(r["model"]) for r in GOLDEN_REQUESTS})  # the models with golden requests
    per_model = [[r for r in GOLDEN_REQUESTS if r["model"] == name][:4] for name in pinned]

    def send_in_turn(requests: list[dict]) -> list[str]:  # type: ignore[type-arg]
        mismatched = []
        for body in requests:
            response = client.post("/v1/generations", json=body)
            assert response.status_code == 200 and response.json()["status"] == "succeeded", response.text
            if png_sha256(response.json()) != expected[request_key(body)]:
                mismatched.append(request_key(body))
        return mismatched

    forwards_before = forwards(worker_process["metrics_url"])
    with ThreadPoolExecutor(len(per_model)) as pool:
        mismatched = [key for keys in pool.map(send_in_turn, per_model) for key in keys]
    assert not mismatched, mismatched
    after = forwards(worker_process["metrics_url"])
    assert all(after[name] > forwards_before.get(name, 0) for name in pinned), after


def test_a_short_job_on_one_model_does_not_wait_for_a_long_one_on_the_other(client: httpx.Client) -> None:
    long = client.post(
        "/v1/generations", json={"model": "mnist-unet", "class_label": 2, "steps": 1000}, headers=ASYNC
    ).json()["id"]
    try:
        wait_until(
            lambda: client.get(f"/v1/jobs/{long}").json()["status"] == "running", 60, "the long job runs"
        )
        started = time.perf_counter()
        short = client.post("/v1/generations", json={"model": "mnist-gauss", "class_label": 5, "steps": 5})
        took = time.perf_counter() - started
        assert short.status_code == 200 and short.json()["status"] == "succeeded", short.text
        still = client.get(f"/v1/jobs/{long}").json()
        assert still["status"] == "running" and still["progress"]["step"] < 1000, still
        print(f"\nshort mnist-gauss job beside a 1000-step mnist-unet job: {took * 1000:.0f} ms")
    finally:
        client.delete(f"/v1/jobs/{long}")
        assert finished(client, long)["status"] == "cancelled"


@pytest.fixture
def copy_registry(tmp_path: Path, redis_client: redis.Redis) -> Iterator[Path]:
    """An operator registry file adding ``gauss-copy``; its registration is removed afterwards."""
    path = tmp_path / "registry.toml"
    path.write_text(f'[models.{COPY}]\npath = "{BUNDLED_REGISTRY.parent / "mnist-gauss"}"\n')
    yield path
    redis_client.hdel(MODELS_KEY, COPY)
    redis_client.delete(jobs_stream_key(COPY), queued_jobs_key(COPY), dead_letter_stream_key(COPY))


def test_a_model_whose_only_worker_died_is_dropped_and_refused_with_a_503(
    client: httpx.Client,
    redis_client: redis.Redis,
    redis_server: RedisServer,
    copy_registry: Path,
    tmp_path: Path,
) -> None:
    ttl_s, cache_s = 2.0, 2.0  # the worker's heartbeat TTL; the session API's models_cache_s (default)
    env = {
        "DENOISE_MODELS": COPY,
        "DENOISE_REGISTRY_FILE": str(copy_registry),
        "DENOISE_METRICS_PORT": "0",
        "DENOISE_HEARTBEAT_INTERVAL_S": "0.5",
        "DENOISE_HEARTBEAT_TTL_S": str(ttl_s),
    }
    with running_worker(redis_server, tmp_path / "worker.log", "copy-worker", **env) as process:
        wait_until(lambda: COPY in model_names(client), 30, f"{COPY} listed")
        body = {"class_label": 7, "steps": 10, "sampler": "ddim", "seed": 31}
        served = client.post("/v1/generations", json={"model": COPY, **body}).json()
        assert served["status"] == "succeeded" and served["config"]["model"] == COPY
        # the same folder as mnist-gauss: the same bytes as its golden request
        assert png_sha256(served) == load_hashes()[request_key({"model": "mnist-gauss", **body})]

        process.kill()  # no goodbye: its heartbeat is left to expire
        killed = time.monotonic()
        wait_until(lambda: COPY not in model_names(client), 30, f"{COPY} dropped")
        dropped_s = time.monotonic() - killed

    assert dropped_s <= ttl_s + cache_s + 1.0, dropped_s
    assert model_names(client) == sorted(SESSION_MODELS)
    assert redis_client.hexists(MODELS_KEY, COPY)  # still registered: known, but nobody serves it
    entries = redis_client.xlen(jobs_stream_key(COPY))
    refused = client.post("/v1/generations", json={"model": COPY, "class_label": 1, "steps": 2})
    assert refused.status_code == 503, refused.text
    assert int(refused.headers["retry-after"]) >= 1
    assert COPY in refused.json()["detail"] and "no live worker" in refused.json()["detail"]
    assert redis_client.xlen(jobs_stream_key(COPY)) == entries  # nothing was enqueued
    unknown = client.post("/v1/generations", json={"model": "no-such-model", "steps": 2})
    assert unknown.status_code == 422
    assert "available: mnist-gauss, mnist-text, mnist-unet" in unknown.json()["detail"][0]["msg"]
    print(f"\n{COPY} dropped from /v1/models {dropped_s:.1f} s after kill -9 of its only worker")
