"""The dispatcher in-process, against a redis-server of its own and a stand-in sender that holds
every attempt until the test lets it go (a slow receiver): a job's requests go out in order, and
progress that is still waiting is replaced by newer progress, so a slow receiver's backlog stays
at start, one progress and completed per job."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import pytest
import redis.asyncio as aioredis

from app.job_queue import JobQueue
from app.metrics import ApiMetrics
from app.webhook_sender import Attempt
from app.webhooks import RetryPolicy, WebhookDispatcher
from devstack.redis_server import RedisServer
from protocol import job_scripts
from protocol.events import JobEvent, append_event_call
from protocol.keys import WEBHOOK_FIELD, WEBHOOK_SENDERS_GROUP, WEBHOOKS_STREAM, job_key
from protocol.schema import WebhookSettings
from protocol.webhooks import WebhookDelivery

JOB = "cd" * 16


class HeldSender:
    """Answers 2xx to every attempt, once ``release`` is set."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.sent: list[WebhookDelivery] = []

    async def send(self, delivery: WebhookDelivery) -> Attempt:
        await self.release.wait()
        self.sent.append(delivery)
        return Attempt("delivered", "HTTP 204", 0.001)

    async def aclose(self) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    own = RedisServer(appendonly=False).start()
    yield own
    own.stop()


async def until(predicate, timeout_s: float = 10) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not await predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def slow_receiver_gets_start_latest_progress_and_completed(url: str) -> None:
    client = aioredis.Redis.from_url(url, decode_responses=True)
    metrics, sender = ApiMetrics(), HeldSender()
    dispatcher = WebhookDispatcher(
        client,
        JobQueue(client, 600, 1.0),
        sender,  # type: ignore[arg-type]
        metrics,
        RetryPolicy(max_attempts=3, backoff_s=0.1, backoff_max_s=1),
        concurrency=8,
        lease_s=30,
        consumer="test-replica",
    )
    webhook = WebhookSettings(
        url="http://h/", events=["start", "progress", "completed"], progress_interval_s=0
    )
    await client.hset(job_key(JOB), WEBHOOK_FIELD, webhook.model_dump_json())
    append = client.register_script(job_scripts.APPEND_EVENT)
    await dispatcher.start()
    try:
        await until(lambda: client.exists(WEBHOOKS_STREAM))
        events = [
            JobEvent(type="running", job_id=JOB, at=time.time(), step=step, total=3) for step in range(4)
        ]
        for event in [*events, JobEvent(type="succeeded", job_id=JOB, at=time.time())]:
            keys, args = append_event_call(event, 600)
            await append(keys=keys, args=args)

        async def all_read() -> bool:
            return int((await client.xpending(WEBHOOKS_STREAM, WEBHOOK_SENDERS_GROUP))["pending"]) == 5

        await until(all_read)  # the start is held; the rest wait behind it
        sender.release.set()

        async def all_done() -> bool:
            return await client.xlen(WEBHOOKS_STREAM) == 0

        await until(all_done)
    finally:
        await dispatcher.stop()
        await client.aclose()
    assert [d.type for d in sender.sent] == ["job.started", "job.progress", "job.completed"]
    assert json.loads(sender.sent[1].body)["data"] == {"id": JOB, "step": 3, "total": 3}
    assert metrics.webhook_deliveries.labels("superseded")._value.get() == 2
    assert metrics.webhook_deliveries.labels("delivered")._value.get() == 3


def test_a_slow_receiver_gets_the_start_the_latest_progress_and_the_end_in_order(server: RedisServer) -> None:
    asyncio.run(slow_receiver_gets_start_latest_progress_and_completed(server.url))
