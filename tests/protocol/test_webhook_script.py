"""APPEND_EVENT writes a webhook delivery request beside a job's event when the job's webhook
wants it: its first running event is a start, later ones are progress (throttled), the final one
is completed; jobs without a webhook add nothing. Against a redis-server of its own (the
session's may have a dispatcher reading the webhooks stream)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import redis

from devstack.redis_server import RedisServer
from protocol import job_scripts
from protocol.events import JobEvent, append_event_call
from protocol.keys import WEBHOOK_FIELD, WEBHOOKS_STREAM, job_events_key, job_key, webhook_state_key
from protocol.schema import WebhookSettings
from protocol.webhooks import DeliveryRequest, delivery_of

JOB = "ab" * 16


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    own = RedisServer(appendonly=False).start()
    yield own
    own.stop()


@pytest.fixture
def client(server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(server.url, decode_responses=True)
    client.flushall()
    yield client
    client.close()


def job_with(client: redis.Redis, webhook: WebhookSettings | None) -> None:
    client.hset(
        job_key(JOB),
        mapping={"id": json.dumps(JOB), WEBHOOK_FIELD: json.dumps(webhook and webhook.model_dump())},
    )


def append(client: redis.Redis, event: JobEvent) -> str:
    keys, args = append_event_call(event, 600)
    return str(client.register_script(job_scripts.APPEND_EVENT)(keys=keys, args=args))


def requests(client: redis.Redis) -> list[DeliveryRequest]:
    return [DeliveryRequest.from_fields(fields) for _id, fields in client.xrange(WEBHOOKS_STREAM)]


def running(step: int, at: float) -> JobEvent:
    return JobEvent(type="running", job_id=JOB, at=at, step=step, total=10, preview_png_base64="iVBOR")


def test_a_job_without_a_webhook_writes_its_events_only(client: redis.Redis) -> None:
    job_with(client, None)
    for event in (
        JobEvent(type="queued", job_id=JOB, at=1.0),
        running(0, 2.0),
        JobEvent(type="succeeded", job_id=JOB, at=3.0),
    ):
        append(client, event)
    assert client.xlen(job_events_key(JOB)) == 3
    assert not client.exists(WEBHOOKS_STREAM) and not client.exists(webhook_state_key(JOB))


def test_start_progress_throttled_and_completed(client: redis.Redis) -> None:
    webhook = WebhookSettings(
        url="https://hooks.example/x", events=["start", "progress", "completed"], progress_interval_s=1.0
    )
    job_with(client, webhook)
    append(client, JobEvent(type="queued", job_id=JOB, at=99.0))
    ids = [append(client, running(step, 100.0 + 0.3 * step)) for step in range(8)]  # 100.0 … 102.1
    append(client, JobEvent(type="succeeded", job_id=JOB, at=103.0))
    got = requests(client)
    # step 4 (101.2) is the first running event 1 s after the start; 1 s after it is past step 7
    assert [(r.kind, r.event.step) for r in got] == [("start", 0), ("progress", 4), ("completed", None)]
    assert got[0].event_id == ids[0] and got[0].webhook == webhook
    assert 0 < client.ttl(webhook_state_key(JOB)) <= 600


def test_only_the_wanted_events_and_a_second_start_is_progress(client: redis.Redis) -> None:
    job_with(client, WebhookSettings(url="http://h/", events=["progress"], progress_interval_s=0))
    append(client, running(0, 1.0))  # the start: not wanted
    append(client, running(3, 2.0))
    append(client, running(0, 3.0))  # a worker took the job over: it starts again, as progress
    append(client, JobEvent(type="failed", job_id=JOB, at=4.0))  # completed: not wanted
    assert [(r.kind, r.event.step) for r in requests(client)] == [("progress", 3), ("progress", 0)]


def test_a_delivery_body_is_the_standard_webhooks_shape(client: redis.Redis) -> None:
    job_with(client, WebhookSettings(url="http://h/", events=["start", "completed"], progress_interval_s=0))
    append(client, running(0, 1_700_000_000.25))
    append(client, JobEvent(type="cancelled", job_id=JOB, at=1_700_000_001.0))
    start, completed = requests(client)
    started = delivery_of(start, None)
    assert started.id == f"msg_{JOB}_{start.event_id}" and "." not in started.id
    assert json.loads(started.body) == {
        "type": "job.started",
        "timestamp": "2023-11-14T22:13:20.250000Z",
        "data": {"id": JOB, "step": 0, "total": 10},
    }
    view = {"id": JOB, "status": "cancelled"}
    assert json.loads(delivery_of(completed, view).body)["data"] == view
    assert json.loads(delivery_of(completed, None).body)["data"] == {"id": JOB, "status": "cancelled"}
