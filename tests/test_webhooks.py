"""Webhooks end to end: the session's worker runs the jobs, an API process with a signing secret
(and private targets allowed, short backoffs) delivers their events to a receiver in this test
(an HTTP server thread) that can be told to fail. Signatures are checked with the receiver's own
``client.webhooks.verify``."""

from __future__ import annotations

import base64
import itertools
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from client.webhooks import verify
from devstack.redis_server import free_port
from protocol.events import JobEvent
from protocol.keys import (
    JOB_EVENT_FIELD,
    WEBHOOK_DEAD_LETTERS_KEY,
    WEBHOOK_EVENT_ID_FIELD,
    WEBHOOK_FIELD,
    WEBHOOK_KIND_FIELD,
    WEBHOOK_RETRIES_KEY,
    WEBHOOK_SENDERS_GROUP,
    WEBHOOKS_STREAM,
)
from protocol.schema import WebhookSettings
from protocol.webhooks import WebhookDelivery
from tests.conftest import ApiProcess

SECRET = "whsec_" + base64.b64encode(os.urandom(32)).decode()
MAX_ATTEMPTS, BACKOFF_S, PROGRESS_INTERVAL_S, LEASE_S = 4, 0.2, 0.2, 5.0


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    status: int


class Receiver:
    """A webhook receiver: answers each path's planned statuses in turn, then 200."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.plans: dict[str, list[int]] = {}
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver.lock:
                    plan = receiver.plans.get(self.path, [])
                    status = plan.pop(0) if plan else 200
                    receiver.received.append(
                        Received(
                            self.path,
                            {k.lower(): v for k, v in self.headers.items()},
                            body,
                            time.time(),
                            status,
                        )
                    )
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def at(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.path == path]

    def wait(
        self, path: str, until: Callable[[list[Received]], bool], timeout_s: float = 60
    ) -> list[Received]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if until(got := self.at(path)):
                return got
            time.sleep(0.05)
        raise TimeoutError(f"{path}: received {[(r.status, r.body[:80]) for r in self.at(path)]}")


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.server.shutdown()


@pytest.fixture(scope="module")
def webhook_api(start_api: Callable[..., ApiProcess], worker_process: dict[str, str]) -> ApiProcess:
    return start_api(
        DENOISE_WEBHOOK_SECRET=SECRET,
        DENOISE_WEBHOOK_ALLOW_PRIVATE="true",
        DENOISE_WEBHOOK_MAX_ATTEMPTS=str(MAX_ATTEMPTS),
        DENOISE_WEBHOOK_BACKOFF_S=str(BACKOFF_S),
        DENOISE_WEBHOOK_BACKOFF_MAX_S="1",
        DENOISE_WEBHOOK_TIMEOUT_S="2",
        DENOISE_WEBHOOK_LEASE_S=str(LEASE_S),
        DENOISE_WEBHOOK_PROGRESS_INTERVAL_S=str(PROGRESS_INTERVAL_S),
        DENOISE_SYNC_TIMEOUT_S="120",
    )


def run_job(api: ApiProcess, body: dict[str, object]) -> dict[str, object]:
    response = httpx.post(f"{api.url}/v1/generations", json=body, timeout=180)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def metric(api: ApiProcess, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(httpx.get(f"{api.url}/metrics").text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def test_a_failing_receiver_gets_the_signed_completed_event_on_the_third_try(
    webhook_api: ApiProcess, receiver: Receiver
) -> None:
    receiver.plans["/flaky"] = [500, 500]
    job = run_job(webhook_api, {"class_label": 2, "steps": 4, "seed": 1, "webhook": receiver.url("/flaky")})
    got = receiver.wait("/flaky", lambda got: len(got) >= 3)
    time.sleep(0.5)  # nothing more comes
    got = receiver.at("/flaky")
    assert [r.status for r in got] == [500, 500, 200]
    assert len({r.headers["webhook-id"] for r in got}) == 1  # the receiver's idempotency key
    assert len({r.body for r in got}) == 1  # byte for byte, event timestamp included
    for r in got:  # each attempt signed afresh, at its own time
        assert abs(int(r.headers["webhook-timestamp"]) - r.at) <= 2
        event = verify(SECRET, r.headers, r.body)
        assert r.headers["content-type"] == "application/json"
    assert event["type"] == "job.completed"
    assert event["data"] == httpx.get(f"{webhook_api.url}/v1/jobs/{job['id']}").json() == job
    assert event["timestamp"].endswith("Z")
    # the backoff: 0.2 s, then 0.4 s (less up to 10 % jitter; a due retry waits up to 0.5 s more)
    assert 0.18 <= got[1].at - got[0].at <= 1.5 and 0.36 <= got[2].at - got[1].at <= 1.5
    assert metric(webhook_api, "denoise_webhook_attempts_total", result="http_error") >= 2
    assert metric(webhook_api, "denoise_webhook_deliveries_total", outcome="delivered") >= 1
    assert metric(webhook_api, "denoise_webhook_delivery_latency_seconds_count") >= 1


def dead_letters(client: redis.Redis, job_id: str) -> list[tuple[WebhookDelivery, dict[str, str]]]:
    found = []
    for _id, fields in client.xrange(WEBHOOK_DEAD_LETTERS_KEY):
        delivery = WebhookDelivery.model_validate_json(fields["delivery"])
        if delivery.job_id == job_id:
            found.append((delivery, fields))
    return found


def test_a_receiver_that_is_down_is_dead_lettered_after_the_last_attempt(
    webhook_api: ApiProcess, redis_client: redis.Redis
) -> None:
    down = f"http://127.0.0.1:{free_port()}/down"
    job = run_job(webhook_api, {"class_label": 5, "steps": 2, "seed": 2, "webhook": down})
    deadline = time.monotonic() + 30
    while not (dead := dead_letters(redis_client, str(job["id"]))) and time.monotonic() < deadline:
        time.sleep(0.1)
    [(delivery, fields)] = dead
    assert delivery.attempts == MAX_ATTEMPTS and delivery.type == "job.completed"
    assert delivery.last_error == fields["reason"] and "ConnectError" in fields["reason"]
    # waited 0.2 + 0.4 + 0.8 s between the four attempts (less up to 10 % jitter)
    assert float(fields["at"]) - float(job["finished_at"]) >= 0.9 * 1.4  # type: ignore[arg-type]
    assert not [m for m in redis_client.zrange(WEBHOOK_RETRIES_KEY, 0, -1) if job["id"] in m]
    assert metric(webhook_api, "denoise_webhook_deliveries_total", outcome="dead_lettered") >= 1
    assert metric(webhook_api, "denoise_webhook_attempts_total", result="connection_error") >= MAX_ATTEMPTS


def test_start_progress_and_completed_arrive_in_order(webhook_api: ApiProcess, receiver: Receiver) -> None:
    body = {
        "class_label": 7,
        "steps": 120,
        "seed": 3,
        "webhook": receiver.url("/all"),
        "webhook_events": ["start", "progress", "completed"],
    }
    job = run_job(webhook_api, body)
    got = receiver.wait("/all", lambda got: any(b"job.completed" in r.body for r in got))
    events = [verify(SECRET, r.headers, r.body) for r in got]
    types = [e["type"] for e in events]
    assert types[0] == "job.started" and types[-1] == "job.completed", types
    assert types.count("job.started") == 1 and types.count("job.completed") == 1
    progress = [e for e in events if e["type"] == "job.progress"]
    assert progress, types
    steps = [e["data"]["step"] for e in events[:-1]]
    assert steps[0] == 0 and steps == sorted(steps) and len(set(steps)) == len(steps)
    assert all(e["data"]["id"] == job["id"] and e["data"]["total"] == 120 for e in events[:-1])
    assert events[-1]["data"]["status"] == "succeeded"
    stamps = [e["timestamp"] for e in events]
    assert stamps == sorted(stamps)  # ISO 8601 UTC sorts as time
    # at most one start-or-progress per interval (the start counts), by the events' own times
    times = [datetime.fromisoformat(stamp).timestamp() for stamp in stamps[:-1]]
    assert all(b - a >= PROGRESS_INTERVAL_S for a, b in itertools.pairwise(times))
    assert len({r.headers["webhook-id"] for r in got}) == len(got)


def test_a_request_left_by_a_replica_that_died_is_taken_over(
    webhook_api: ApiProcess, receiver: Receiver, redis_client: redis.Redis
) -> None:
    job_id = "fe" * 16
    event = JobEvent(type="succeeded", job_id=job_id, at=time.time())
    webhook = WebhookSettings(url=receiver.url("/orphan"), events=["completed"], progress_interval_s=0)
    fields = {
        WEBHOOK_KIND_FIELD: "completed",
        WEBHOOK_EVENT_ID_FIELD: "1-0",
        JOB_EVENT_FIELD: event.model_dump_json(),
        WEBHOOK_FIELD: webhook.model_dump_json(),
    }
    # a replica reads the request and dies: added and read in one transaction, so the live
    # dispatcher (blocked on the stream) cannot get it first
    pipe = redis_client.pipeline(transaction=True)
    pipe.xadd(WEBHOOKS_STREAM, fields)  # type: ignore[arg-type]
    pipe.xreadgroup(WEBHOOK_SENDERS_GROUP, "replica-that-died", {WEBHOOKS_STREAM: ">"}, count=1)
    entry_id, read = pipe.execute()
    assert read[0][1][0][0] == entry_id
    taken_at = time.time()
    [delivered] = receiver.wait("/orphan", lambda got: len(got) >= 1, timeout_s=LEASE_S * 4)
    assert delivered.at - taken_at >= LEASE_S * 0.9  # not before the lease ran out
    payload = verify(SECRET, delivered.headers, delivered.body)
    assert payload["data"] == {"id": job_id, "status": "succeeded"}  # no record: the event's own
    assert delivered.headers["webhook-id"] == f"msg_{job_id}_1-0"
    deadline = time.monotonic() + 5
    while (
        redis_client.xpending(WEBHOOKS_STREAM, WEBHOOK_SENDERS_GROUP)["pending"]
        and time.monotonic() < deadline
    ):
        time.sleep(0.05)
    assert redis_client.xpending(WEBHOOKS_STREAM, WEBHOOK_SENDERS_GROUP)["pending"] == 0
    assert redis_client.xlen(WEBHOOKS_STREAM) == 0  # handled requests are deleted
    assert json.loads(delivered.body)["type"] == "job.completed"
