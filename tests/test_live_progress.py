"""Live progress over Server-Sent Events, from the job's events stream in Redis: queued with its
position, running with step k of n and x̂₀ previews, one final event with the job; resumable with
Last-Event-ID, served by any API replica, and free once the client goes away."""

from __future__ import annotations

import base64
import io
import json
import time
from collections.abc import Callable

import httpx
import redis
from PIL import Image

from tests.conftest import ApiProcess

SLOW_JOB = {"class_label": 3, "steps": 150, "sampler": "ddim", "seed": 9}


def submit(client: httpx.Client, body: dict[str, object]) -> str:
    response = client.post("/v1/generations", json=body, headers={"Prefer": "respond-async"})
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def read_events(base_url: str, job_id: str, last_event_id: str | None = None) -> list[dict[str, object]]:
    """Every event of the stream until it ends: {"id", "event", "data"}."""
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    events: list[dict[str, object]] = []
    frame: dict[str, object] = {}
    with httpx.stream("GET", f"{base_url}/v1/jobs/{job_id}/events", headers=headers, timeout=120) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if not line:
                if "event" in frame:
                    events.append(frame)
                frame = {}
            elif line.startswith(("id:", "event:")):
                name, _, value = line.partition(":")
                frame[name] = value.strip()
            elif line.startswith("data:"):
                frame["data"] = json.loads(line.removeprefix("data:").strip())
    return events


def test_a_job_streams_queued_running_with_previews_and_its_result(
    client: httpx.Client, api_url: str, worker_process: dict[str, str]
) -> None:
    job_id = submit(client, SLOW_JOB)
    events = read_events(api_url, job_id)
    kinds = [e["event"] for e in events]
    assert kinds[0] == "queued" and kinds[-1] == "succeeded" and "running" in kinds
    assert events[0]["data"]["queue_position"] >= 1  # type: ignore[index]
    steps = [e["data"]["step"] for e in events if e["event"] == "running"]  # type: ignore[index]
    assert (
        steps == sorted(steps)
        and steps[-1] > steps[0]
        and all(
            e["data"]["total"] == 150
            for e in events
            if e["event"] == "running"  # type: ignore[index]
        )
    )
    previews = [e["data"]["preview_png_base64"] for e in events if e["data"].get("preview_png_base64")]  # type: ignore[operator,index]
    assert previews, "no x̂₀ preview in a 150-step job"
    image = Image.open(io.BytesIO(base64.b64decode(str(previews[-1]))))
    assert image.format == "PNG" and max(image.size) <= 64
    final = events[-1]["data"]
    assert final["job"]["status"] == "succeeded" and len(final["job"]["images"]) == 1  # type: ignore[index]
    assert all("id" in e for e in events)


def test_last_event_id_resumes_after_the_last_event_seen_on_another_replica(
    client: httpx.Client, api_url: str, worker_process: dict[str, str], start_api: Callable[..., ApiProcess]
) -> None:
    other = start_api()
    job_id = submit(client, {**SLOW_JOB, "steps": 40, "seed": 10})
    everything = read_events(api_url, job_id)
    resumed = read_events(other.url, job_id, last_event_id=str(everything[1]["id"]))
    assert [e["id"] for e in resumed] == [e["id"] for e in everything[2:]]


def test_a_cancelled_queued_job_ends_its_stream(client: httpx.Client, api_url: str) -> None:
    blocker = submit(client, {**SLOW_JOB, "steps": 400, "seed": 11, "num_images": 16})
    queued = submit(client, {**SLOW_JOB, "seed": 12})
    client.delete(f"/v1/jobs/{queued}")
    events = read_events(api_url, queued)
    assert events[-1]["event"] == "cancelled" and events[-1]["data"]["job"]["status"] == "cancelled"  # type: ignore[index]
    client.delete(f"/v1/jobs/{blocker}")


def test_clients_that_disconnect_leave_nothing_behind(
    client: httpx.Client, api_url: str, redis_client: redis.Redis
) -> None:
    job_id = submit(client, {**SLOW_JOB, "steps": 300, "seed": 13})
    before = len(redis_client.client_list())
    for _ in range(20):
        with httpx.stream("GET", f"{api_url}/v1/jobs/{job_id}/events", timeout=10) as response:
            next(response.iter_lines())  # the first line, then hang up
    time.sleep(1.0)
    assert len(redis_client.client_list()) <= before + 2  # the pool may keep a connection or two
    assert client.get("/healthz").status_code == 200
    client.delete(f"/v1/jobs/{job_id}")


def test_an_unknown_job_has_no_events(client: httpx.Client) -> None:
    assert client.get(f"/v1/jobs/{'0' * 32}/events").status_code == 404


def test_a_post_that_accepts_event_streams_streams_its_job(client: httpx.Client, api_url: str) -> None:
    frames: list[str] = []
    body = {**SLOW_JOB, "steps": 30, "seed": 14}
    headers = {"Accept": "text/event-stream"}
    with httpx.stream(
        "POST", f"{api_url}/v1/generations", json=body, headers=headers, timeout=120
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        job_id = response.headers["location"].rsplit("/", 1)[-1]
        frames = [
            line.removeprefix("event:").strip() for line in response.iter_lines() if line.startswith("event:")
        ]
    assert frames[0] == "queued" and frames[-1] == "succeeded" and "running" in frames
    assert client.get(f"/v1/jobs/{job_id}").json()["status"] == "succeeded"
