"""The API's half of "faults, overload and bad input lose nothing", end to end.

Real processes throughout: the session's redis-server and worker, and API processes started
with their own settings (a small queue cap, API keys, a rate limit) or on a Redis of their own
(a password and an ACL user; one the test stops and restarts). Each measuring test prints its
figure; the long ones carry the ``reliability`` marker.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import re
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import redis
from openai import OpenAI

from devstack.redis_server import RedisServer
from protocol.keys import MODELS_KEY, job_key, jobs_stream_key, queued_jobs_key
from protocol.schema import TERMINAL_STATUSES
from tests.conftest import ApiProcess, running_worker

ROOT = Path(__file__).resolve().parent.parent
MODEL = "mnist-unet"
STREAM = jobs_stream_key(MODEL)
ASYNC = {"Prefer": "respond-async"}
KEY_A = "test-key-alpha-0123456789abcdef"
KEY_B = "test-key-bravo-0123456789abcdef"
TINY = {"class_label": 1, "steps": 2}
TINY_OPENAI = {"prompt": "1", "steps": 2}  # POST /v1/images/generations: the class name as prompt
# 16 guided images = 32 rows: the worker's whole default batch, so jobs behind it stay queued
BLOCKER = {"class_label": 8, "steps": 1000, "num_images": 16, "guidance_scale": 2.0}


def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise TimeoutError(what)


def metric(text: str, name: str, **labels: str) -> float:
    """One sample of a Prometheus exposition (0 when absent)."""
    label_text = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    pattern = re.escape(f"{name}{{{label_text}}}" if labels else name) + r" ([0-9.e+-]+)"
    found = re.search(pattern, text)
    return float(found.group(1)) if found else 0.0


def finished(client: httpx.Client, job_ids: list[str], timeout_s: float = 60) -> None:
    """Waits until every job is succeeded, failed or cancelled."""
    for job_id in job_ids:
        url = f"/v1/jobs/{job_id}"
        wait_for(lambda: client.get(url).json()["status"] in TERMINAL_STATUSES, timeout_s, f"{url} ends")  # noqa: B023


def settle(client: httpx.Client, job_ids: list[str]) -> None:
    """Cancels the jobs and waits until they have ended (the worker is shared)."""
    for job_id in job_ids:
        client.delete(f"/v1/jobs/{job_id}")
    finished(client, job_ids)


@pytest.fixture(scope="module")
def small(start_api: Callable[..., ApiProcess], worker_process: dict[str, str]) -> Iterator[httpx.Client]:
    """An API with a queue cap of 5 and a one-second Idempotency-Key lifetime."""
    api = start_api(DENOISE_MAX_QUEUED_JOBS="5", DENOISE_IDEMPOTENCY_TTL_S="1")
    with httpx.Client(base_url=api.url, timeout=120) as http:
        yield http


@pytest.fixture(scope="module")
def keyed(start_api: Callable[..., ApiProcess], worker_process: dict[str, str]) -> ApiProcess:
    """An API that asks for one of two API keys."""
    return start_api(DENOISE_API_KEYS=f"{KEY_A},{KEY_B}")


# ------------------------------------------------------------------------ idempotency
def test_a_retry_with_the_same_idempotency_key_returns_the_same_job(
    client: httpx.Client, redis_client: redis.Redis
) -> None:
    key = {"Idempotency-Key": f"retry-{uuid.uuid4()}"}
    request = {"class_label": 3, "steps": 4, "seed": 11}
    before = redis_client.xlen(STREAM)
    first = client.post("/v1/generations", json=request, headers={**key, **ASYNC})
    again = client.post("/v1/generations", json=request, headers={**key, **ASYNC})
    synced = client.post("/v1/generations", json=request, headers=key)  # the retry may wait
    assert first.status_code == 202 and "idempotent-replayed" not in first.headers
    assert again.status_code == 202 and again.headers["idempotent-replayed"] == "true"
    assert synced.status_code == 200 and synced.json()["status"] == "succeeded"
    assert first.json()["id"] == again.json()["id"] == synced.json()["id"]
    assert synced.headers["location"] == first.headers["location"]
    assert redis_client.xlen(STREAM) == before + 1


def test_the_same_key_with_another_body_is_a_422_that_says_so(
    client: httpx.Client, redis_client: redis.Redis
) -> None:
    key = {"Idempotency-Key": f"reused-{uuid.uuid4()}", **ASYNC}
    first = client.post("/v1/generations", json={"class_label": 1, "steps": 2}, headers=key)
    before = redis_client.xlen(STREAM)
    other = client.post("/v1/generations", json={"class_label": 2, "steps": 2}, headers=key)
    assert other.status_code == 422
    error = other.json()["detail"][0]
    assert error["loc"] == ["header", "Idempotency-Key"]
    assert "different request body" in error["msg"] and first.json()["id"] in error["msg"]
    assert redis_client.xlen(STREAM) == before
    # the same fields in another order, with defaults spelled out, are the same request
    same = client.post(
        "/v1/generations", json={"steps": 2, "class_label": 1, "num_images": 1, "seed": None}, headers=key
    )
    assert same.status_code == 202 and same.json()["id"] == first.json()["id"]


@pytest.mark.parametrize("value", [b"", b"x" * 129, b"has space", b"caf\xe9", b"tab\there"])
def test_a_malformed_idempotency_key_is_a_422_naming_the_header(
    client: httpx.Client, redis_client: redis.Redis, value: bytes
) -> None:
    before = redis_client.xlen(STREAM)
    response = client.post("/v1/generations", json=TINY, headers=[(b"Idempotency-Key", value)])
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]
    assert redis_client.xlen(STREAM) == before


def test_50_concurrent_posts_with_one_key_make_one_job(
    api_url: str, client: httpx.Client, redis_client: redis.Redis
) -> None:
    headers = {"Idempotency-Key": f"burst-{uuid.uuid4()}", **ASYNC}
    before = redis_client.xlen(STREAM)

    async def burst() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=50)
        async with httpx.AsyncClient(base_url=api_url, timeout=60, limits=limits) as http:
            return await asyncio.gather(
                *(http.post("/v1/generations", json=TINY, headers=headers) for _ in range(50))
            )

    responses = asyncio.run(burst())
    ids = {r.json()["id"] for r in responses}
    created = redis_client.xlen(STREAM) - before
    print(f"\n50 concurrent Idempotency-Key POSTs -> {len(ids)} job, {created} stream entry")
    assert [r.status_code for r in responses] == [202] * 50
    assert len(ids) == 1 and created == 1
    settle(client, list(ids))


def test_an_idempotency_key_expires_after_its_ttl(small: httpx.Client) -> None:
    headers = {"Idempotency-Key": f"ttl-{uuid.uuid4()}", **ASYNC}
    first = small.post("/v1/generations", json=TINY, headers=headers).json()["id"]
    assert small.post("/v1/generations", json=TINY, headers=headers).json()["id"] == first
    time.sleep(1.2)  # DENOISE_IDEMPOTENCY_TTL_S=1
    assert small.post("/v1/generations", json=TINY, headers=headers).json()["id"] != first


def test_idempotency_keys_are_scoped_to_the_api_key(keyed: ApiProcess) -> None:
    headers = {"Idempotency-Key": f"scoped-{uuid.uuid4()}", **ASYNC}
    with httpx.Client(base_url=keyed.url, timeout=60) as http:
        a = http.post("/v1/generations", json=TINY, headers={**headers, "X-API-Key": KEY_A})
        b = http.post("/v1/generations", json=TINY, headers={**headers, "X-API-Key": KEY_B})
        assert a.status_code == b.status_code == 202
        assert a.json()["id"] != b.json()["id"]  # one caller cannot read another's job by its key


# ---------------------------------------------------------------------- back-pressure
def test_a_burst_over_the_queue_cap_is_refused_with_429_and_nothing_enqueued(
    small: httpx.Client, redis_client: redis.Redis
) -> None:
    cap = 5
    blocker = small.post("/v1/generations", json=BLOCKER, headers=ASYNC).json()["id"]
    jobs = [blocker]
    try:
        wait_for(lambda: small.get(f"/v1/jobs/{blocker}").json()["status"] == "running", 30, "blocker runs")
        queued_before = redis_client.zcard(queued_jobs_key(MODEL))
        stream_before = redis_client.xlen(STREAM)
        rejected_before = metric(
            small.get("/metrics").text, "denoise_api_rejected_total", reason="queue_full"
        )

        async def burst() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=str(small.base_url), timeout=60) as http:
                return await asyncio.gather(
                    *(http.post("/v1/generations", json=TINY, headers=ASYNC) for _ in range(3 * cap))
                )

        responses = asyncio.run(burst())
        accepted = [r for r in responses if r.status_code == 202]
        refused = [r for r in responses if r.status_code == 429]
        jobs += [r.json()["id"] for r in accepted]
        others = len(responses) - len(accepted) - len(refused)
        with_retry_after = [r for r in refused if int(r.headers["retry-after"]) >= 1]
        print(
            f"\nburst of 3x cap ({3 * cap} POSTs, cap {cap}, {queued_before} queued before): "
            f"{len(accepted)} accepted, {len(with_retry_after)} 429 with Retry-After, {others} other failures"
        )
        assert others == 0 and len(with_retry_after) == len(refused)
        assert len(accepted) == cap - queued_before
        assert "max_queued_jobs=5" in refused[0].json()["detail"]
        assert redis_client.xlen(STREAM) == stream_before + len(accepted)
        assert redis_client.zcard(queued_jobs_key(MODEL)) == cap
        exposition = small.get("/metrics").text
        assert metric(exposition, "denoise_api_queued_jobs", model=MODEL) == cap
        assert metric(exposition, "denoise_api_rejected_total", reason="queue_full") == rejected_before + len(
            refused
        )

        # cancelling a queued job frees its place at once
        assert small.delete(f"/v1/jobs/{accepted[0].json()['id']}").json()["status"] == "cancelled"
        assert redis_client.zcard(queued_jobs_key(MODEL)) == cap - 1
        again = small.post("/v1/generations", json=TINY, headers=ASYNC)
        assert again.status_code == 202
        jobs.append(again.json()["id"])
        assert small.post("/v1/generations", json=TINY, headers=ASYNC).status_code == 429
    finally:
        small.delete(f"/v1/jobs/{blocker}")
    # the worker starts what was queued: the count falls back as each one leaves the queue
    wait_for(lambda: redis_client.zcard(queued_jobs_key(MODEL)) == 0, 60, "queue drains")
    finished(small, jobs)


# ----------------------------------------------------------------------- request size
def test_a_10_mb_body_is_a_413_before_it_is_parsed(client: httpx.Client, redis_client: redis.Redis) -> None:
    before = redis_client.xlen(STREAM)
    rejected_before = metric(
        client.get("/metrics").text, "denoise_api_rejected_total", reason="body_too_large"
    )
    body = b'{"prompt": "' + b"x" * (10 * 1024 * 1024) + b'"}'
    started = time.perf_counter()
    declared = client.post("/v1/generations", content=body, headers={"content-type": "application/json"})
    declared_ms = 1000 * (time.perf_counter() - started)

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 64 * 1024):
            yield body[start : start + 64 * 1024]

    started = time.perf_counter()
    chunked = client.post("/v1/generations", content=chunks(), headers={"content-type": "application/json"})
    chunked_ms = 1000 * (time.perf_counter() - started)
    print(
        f"\n10 MB body -> {declared.status_code} in {declared_ms:.0f} ms (Content-Length), "
        f"{chunked.status_code} in {chunked_ms:.0f} ms (chunked)"
    )
    openai_route = client.post(
        "/v1/images/generations", content=body, headers={"content-type": "application/json"}
    )
    assert declared.status_code == chunked.status_code == openai_route.status_code == 413
    assert "max_body_bytes" in declared.json()["detail"]
    assert openai_route.json()["error"]["code"] == "request_too_large"
    assert redis_client.xlen(STREAM) == before
    rejected = metric(client.get("/metrics").text, "denoise_api_rejected_total", reason="body_too_large")
    assert rejected == rejected_before + 3
    # just under the limit, the body is parsed and validated as usual
    near = client.post("/v1/generations", json={"prompt": "x" * 60_000})
    assert near.status_code == 422 and near.json()["detail"][0]["loc"] == ["body", "prompt"]


# --------------------------------------------------------------------- access control
# every route that takes a key, with a body it would accept; a test below checks that the list
# names every operation of the schema
GUARDED = [
    ("GET", "/v1/models", None),
    ("GET", "/v1/samplers", None),
    ("GET", f"/v1/jobs/{'0' * 32}", None),
    ("GET", f"/v1/jobs/{'0' * 32}/events", None),
    ("DELETE", f"/v1/jobs/{'0' * 32}", None),
    ("POST", "/v1/generations", TINY),
    ("POST", "/v1/images/generations", TINY_OPENAI),
    ("POST", "/v1/images/edits", TINY_OPENAI),  # the key is checked before the form is read
]


def test_api_keys_guard_every_route_but_the_open_ones(keyed: ApiProcess) -> None:
    with httpx.Client(base_url=keyed.url, timeout=60) as http:
        for method, path, body in GUARDED:
            for headers in (
                {},
                {"Authorization": "Bearer wrong-key"},
                {"X-API-Key": KEY_A[:-1]},
                {"Authorization": f"Basic {KEY_A}"},
            ):
                response = http.request(method, path, json=body, headers=headers)
                assert response.status_code == 401, (method, path, headers)
                assert response.headers["www-authenticate"] == "Bearer"
        assert http.get("/v1/models", headers={"Authorization": f"Bearer {KEY_A}"}).status_code == 200
        assert http.get("/v1/models", headers={"X-API-Key": KEY_B}).status_code == 200
        made = http.post("/v1/generations", json=TINY, headers={"X-API-Key": KEY_B})
        assert made.status_code == 200 and made.json()["status"] == "succeeded"
        for path in ("/healthz", "/readyz", "/metrics", "/docs", "/redoc", "/openapi.json", "/"):
            assert http.get(path).status_code == 200, path
        assert http.get("/docs/assets/swagger-ui-bundle.js").status_code == 200
        assert http.get("/playground/playground.js").status_code == 200  # the page asks for the key
        assert metric(http.get("/metrics").text, "denoise_api_rejected_total", reason="unauthorized") >= 24

        # OpenAI's SDK sends its api_key as `Authorization: Bearer`; refusals come in OpenAI's shape
        refused = http.post("/v1/images/generations", json=TINY_OPENAI)
        assert refused.json()["error"]["code"] == "invalid_api_key"
        with OpenAI(base_url=f"{keyed.url}/v1", api_key=KEY_A, max_retries=0) as sdk:
            images = sdk.images.generate(prompt="1", extra_body={"steps": 2})
            assert images.data is not None and len(images.data) == 1
        wrong = OpenAI(base_url=f"{keyed.url}/v1", api_key="wrong-key", max_retries=0)
        with wrong, pytest.raises(openai.AuthenticationError):
            wrong.images.generate(prompt="1", extra_body={"steps": 2})

        schema = http.get("/openapi.json").json()
        schemes = schema["components"]["securitySchemes"]
        assert schemes["HTTPBearer"]["type"] == "http" and schemes["HTTPBearer"]["scheme"] == "bearer"
        assert schemes["APIKeyHeader"]["in"] == "header" and schemes["APIKeyHeader"]["name"] == "X-API-Key"
        post = schema["paths"]["/v1/generations"]["post"]
        assert {"HTTPBearer": []} in post["security"] and "401" in post["responses"]
        assert "security" not in schema["paths"]["/healthz"]["get"]


def test_the_guarded_list_names_every_operation_of_the_schema(client: httpx.Client) -> None:
    schema = client.get("/openapi.json").json()
    operations = {
        (method.upper(), path)
        for path, item in schema["paths"].items()
        for method in item
        if method != "parameters"
    }
    open_paths = {"/healthz", "/readyz", "/metrics"}
    listed = {(method, re.sub(r"/[0-9a-f]{32}(?=/|$)", "/{job_id}", path)) for method, path, _ in GUARDED}
    assert {(m, p) for m, p in operations if p not in open_paths} == listed


def test_an_open_api_declares_no_security(client: httpx.Client) -> None:
    schema = client.get("/openapi.json").json()
    assert "securitySchemes" not in schema.get("components", {})
    assert client.get("/v1/models").status_code == 200


def test_each_api_key_has_its_own_rate_limit(
    start_api: Callable[..., ApiProcess], worker_process: dict[str, str]
) -> None:
    api = start_api(
        DENOISE_API_KEYS=f'["{KEY_A}", "{KEY_B}"]', DENOISE_RATE_LIMIT_PER_S="1", DENOISE_RATE_LIMIT_BURST="3"
    )
    a, b = {"X-API-Key": KEY_A}, {"Authorization": f"Bearer {KEY_B}"}
    with httpx.Client(base_url=api.url, timeout=60) as http:
        responses = [http.get("/v1/samplers", headers=a) for _ in range(4)]
        limited = responses[-1]
        assert [r.status_code for r in responses] == [200, 200, 200, 429]  # a burst of 3, then 1/s
        assert limited.status_code == 429 and 1 <= int(limited.headers["retry-after"]) <= 2
        assert "rate limit" in limited.json()["detail"]
        openai_limited = http.post("/v1/images/generations", json=TINY_OPENAI, headers=a)
        assert openai_limited.status_code == 429 and int(openai_limited.headers["retry-after"]) >= 1
        assert openai_limited.json()["error"]["code"] == "rate_limit_exceeded"
        assert http.get("/v1/samplers", headers=b).status_code == 200  # another key, another bucket
        assert all(http.get("/healthz").status_code == 200 for _ in range(5))  # open paths: no limit
        time.sleep(int(limited.headers["retry-after"]))
        assert http.get("/v1/samplers", headers=a).status_code == 200
        assert metric(http.get("/metrics").text, "denoise_api_rejected_total", reason="rate_limited") >= 1


def test_an_open_api_rate_limits_per_client_address(
    start_api: Callable[..., ApiProcess], worker_process: dict[str, str]
) -> None:
    api = start_api(DENOISE_RATE_LIMIT_PER_S="0.5", DENOISE_RATE_LIMIT_BURST="2")
    with httpx.Client(base_url=api.url, timeout=60) as http:
        codes = [http.get("/v1/samplers").status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        assert "security" not in http.get("/openapi.json").json()["paths"]["/v1/samplers"]["get"]


def test_a_redis_url_with_a_password_or_an_acl_user_works(
    start_api: Callable[..., ApiProcess], redis_client: redis.Redis, worker_process: dict[str, str]
) -> None:
    model_info = redis_client.hget(MODELS_KEY, MODEL)
    with RedisServer(appendonly=False, password="s3cret-pass") as server:
        admin = redis.Redis.from_url(server.url, decode_responses=True)
        admin.hset(MODELS_KEY, MODEL, str(model_info))
        # an ACL user confined to the service's keys and channels
        admin.acl_setuser(
            "denoise-api",
            enabled=True,
            passwords=["+acl-pass"],
            keys=["denoise:*"],
            channels=["denoise:*"],
            reset_channels=True,
            commands=["+@all"],
        )
        port = server.port
        for url in (server.url, f"redis://denoise-api:acl-pass@127.0.0.1:{port}/0"):
            # no worker here: the scale-from-zero setting lets a registered model queue jobs
            api = start_api(
                redis_url=url,
                ready_path="/healthz",
                DENOISE_MODELS_CACHE_S="0",
                DENOISE_REQUIRE_LIVE_WORKER="false",
            )
            with httpx.Client(base_url=api.url, timeout=30) as http:
                ready = http.get("/readyz").json()
                assert ready["reason"].startswith("no worker heartbeat"), ready  # Redis itself answered
                made = http.post("/v1/generations", json=TINY, headers={**ASYNC, "Idempotency-Key": "acl"})
                assert made.status_code == 202, made.text
                job_id = made.json()["id"]
                assert http.get(f"/v1/jobs/{job_id}").json()["status"] == "queued"
                assert admin.zcard(queued_jobs_key(MODEL)) == 1
                assert http.delete(f"/v1/jobs/{job_id}").json()["status"] == "cancelled"
                assert admin.zcard(queued_jobs_key(MODEL)) == 0
                admin.delete("denoise:idempotency:open:acl")
        wrong = start_api(redis_url=f"redis://default:wrong@127.0.0.1:{port}/0", ready_path="/healthz")
        with httpx.Client(base_url=wrong.url, timeout=30) as http:
            ready = http.get("/readyz")
            assert ready.status_code == 503 and "AuthenticationError" in ready.json()["reason"], ready.text
            assert http.post("/v1/generations", json=TINY).status_code == 503
        admin.close()


# ------------------------------------------------------------------ graceful shutdown
def test_sigterm_lets_in_flight_requests_finish(
    start_api: Callable[..., ApiProcess], client: httpx.Client, worker_process: dict[str, str]
) -> None:
    api = start_api(DENOISE_SYNC_TIMEOUT_S="60", DENOISE_GRACEFUL_SHUTDOWN_S="10")
    key = {"Idempotency-Key": f"sigterm-{uuid.uuid4()}"}
    answers: list[httpx.Response] = []
    waiting = threading.Thread(
        target=lambda: answers.append(
            httpx.post(f"{api.url}/v1/generations", json=BLOCKER, headers=key, timeout=60)
        )
    )
    waiting.start()
    time.sleep(1.0)  # the sync POST is in, and waits
    # the same key from another API process names the job that the waiting request made
    job_id = client.post("/v1/generations", json=BLOCKER, headers={**key, **ASYNC}).json()["id"]
    try:
        wait_for(lambda: client.get(f"/v1/jobs/{job_id}").json()["status"] == "running", 30, "job runs")
        assert not answers
        signalled = time.perf_counter()
        api.process.send_signal(signal.SIGTERM)
        waiting.join(timeout=15)
        answered_s = time.perf_counter() - signalled
        api.process.wait(timeout=15)
        exited_s = time.perf_counter() - signalled
        print(
            f"\nSIGTERM during a sync wait: answered 202 in {answered_s:.2f} s, "
            f"process exited in {exited_s:.2f} s"
        )
        assert answers and answers[0].status_code == 202, answers
        body = answers[0].json()
        assert body["id"] == job_id and body["status"] == "running"
        assert answers[0].headers["location"] == f"/v1/jobs/{job_id}"
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{api.url}/healthz")
    finally:
        settle(client, [job_id])


# ---------------------------------------------------------------- no path, no pickle
@pytest.mark.parametrize(
    "payload",
    [
        {"model": "../../etc/passwd"},
        {"model": "/work/main/workers/models/mnist-unet"},
        {"model": "workers/models/mnist-unet"},
        {"model": "file:///etc/passwd"},
        {"model_path": "/etc/passwd"},
        {"checkpoint": "/tmp/evil.pt"},
    ],
)
def test_no_request_can_name_a_path(
    client: httpx.Client, redis_client: redis.Redis, payload: dict[str, str]
) -> None:
    before = redis_client.xlen(STREAM)
    response = client.post("/v1/generations", json={"class_label": 1, **payload})
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"][1] in payload
    assert redis_client.xlen(STREAM) == before


class _Exploit:
    """Unpickling this writes a file: the proof that something was unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.write_text, (self.marker, "unpickled"))


def test_a_pickled_record_is_refused_never_unpickled(
    client: httpx.Client, redis_client: redis.Redis, tmp_path: Path
) -> None:
    marker = tmp_path / "marker"
    job_id = uuid.uuid4().hex
    payload = pickle.dumps(_Exploit(marker))
    redis_client.hset(job_key(job_id), mapping={"id": payload, "status": payload, "config": payload})
    try:
        response = client.get(f"/v1/jobs/{job_id}")
        assert response.status_code == 500 and "not a valid job record" in response.json()["detail"]
        assert client.delete(f"/v1/jobs/{job_id}").status_code == 500
        assert not marker.exists()
    finally:
        redis_client.delete(job_key(job_id))


def test_the_api_code_has_no_unpickling_call() -> None:
    forbidden = re.compile(
        r"\b(pickle|cPickle|dill|joblib|shelve|marshal)\b|torch\.load|allow_pickle|yaml\.load\("
    )
    offenders = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in sorted((ROOT / "app").rglob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if forbidden.search(line)
    ]
    assert offenders == []


# ---------------------------------------------------------------------- Redis outages
def _time_to_503(http: httpx.Client, routes: list[tuple[str, str]]) -> dict[str, float]:
    """Milliseconds each route takes to answer while Redis is away (asserting the 503)."""
    timings = {}
    for method, path in routes:
        started = time.perf_counter()
        response = http.request(method, path, json=TINY if method == "POST" else None)
        timings[f"{method} {path}"] = 1000 * (time.perf_counter() - started)
        assert response.status_code == 503, (method, path, response.status_code, response.text)
    return timings


def _time_to_200(http: httpx.Client, path: str, timeout_s: float) -> float:
    started = time.perf_counter()
    wait_for(lambda: http.get(path).status_code == 200, timeout_s, f"{path} answers 200")
    return time.perf_counter() - started


@pytest.mark.reliability
def test_redis_outages_are_503_within_a_second_and_the_api_reconnects_by_itself(
    start_api: Callable[..., ApiProcess], tmp_path: Path
) -> None:
    (tmp_path / "redis").mkdir()
    server = RedisServer(appendonly=True, data_dir=tmp_path / "redis", password="outage-pass").start()
    try:
        with running_worker(server, tmp_path / "worker.log", "outage-worker", DENOISE_METRICS_PORT="0"):
            api = start_api(redis_url=server.url, DENOISE_MODELS_CACHE_S="0", DENOISE_SYNC_TIMEOUT_S="3")
            with httpx.Client(base_url=api.url, timeout=30) as http:
                _outage_scenario(http, server)
    finally:
        server.stop()


def _outage_scenario(http: httpx.Client, server: RedisServer) -> None:
    done = http.post("/v1/generations", json=TINY).json()
    assert done["status"] == "succeeded"
    job = f"/v1/jobs/{done['id']}"
    routes = [
        ("POST", "/v1/generations"),
        ("GET", job),
        ("DELETE", job),
        ("GET", "/v1/models"),
        ("GET", "/readyz"),
    ]

    # a sync POST is waiting for a long job when Redis goes away: it still answers by its timeout
    answers: list[tuple[float, httpx.Response]] = []

    def sync_post() -> None:
        started = time.perf_counter()
        response = httpx.post(f"{str(http.base_url).rstrip('/')}/v1/generations", json=BLOCKER, timeout=30)
        answers.append((time.perf_counter() - started, response))

    waiting = threading.Thread(target=sync_post)
    waiting.start()
    time.sleep(1.0)

    # 1. stopped: connections are refused
    assert server.process is not None
    server.stop()
    down = _time_to_503(http, routes)
    reason = http.get("/readyz").json()["reason"]
    assert reason.startswith("redis unreachable"), reason
    assert http.get("/healthz").status_code == 200  # alive: only readiness depends on Redis
    waiting.join(timeout=10)
    sync_s, sync_answer = answers[0]
    assert sync_answer.status_code == 202 and sync_answer.headers["location"].startswith("/v1/jobs/")

    server.start()
    api_back_s = _time_to_200(http, "/v1/models", 30)
    ready_s = api_back_s + _time_to_200(http, "/readyz", 30)
    assert http.get(job).json()["status"] == "succeeded"  # AOF: nothing was lost

    # 2. frozen (SIGSTOP): connections open but nothing answers; only timeouts can tell
    assert server.process is not None
    os.kill(server.process.pid, signal.SIGSTOP)
    try:
        frozen = _time_to_503(http, routes)
    finally:
        os.kill(server.process.pid, signal.SIGCONT)
    thawed_s = _time_to_200(http, "/readyz", 30)

    blocked = sync_answer.json()["id"]
    settle(http, [blocked])

    print(
        f"\nredis down: 503 in {max(down.values()):.0f} ms (slowest of {len(down)} routes); "
        f"API reconnected {api_back_s:.2f} s and ready again {ready_s:.2f} s after restart"
        f"\nredis frozen (SIGSTOP): 503 in {max(frozen.values()):.0f} ms; "
        f"ready {thawed_s:.2f} s after SIGCONT"
        f"\nsync POST waiting when redis stopped: answered 202 after {sync_s:.2f} s (sync timeout 3 s)"
    )
    assert max(down.values()) < 1000 and max(frozen.values()) < 1000, (down, frozen)
    assert sync_s < 3 + 1.5
