"""Faults lose nothing: killed workers, poison jobs, SIGTERM, a Redis restart, mass cancels.

Each test runs a dedicated stack (its own redis-server with AOF, the API, and worker processes
that the test kills), with short leases so that recovery is quick. Every test prints the
figure it measures. ``make reliability`` runs them (marker ``reliability``).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from devstack.redis_server import RedisServer, free_port
from protocol.keys import dead_letter_stream_key, job_key, jobs_stream_key, worker_heartbeat_key
from protocol.schema import TERMINAL_STATUSES
from tests.conftest import ROOT, service_env, wait_until

pytestmark = pytest.mark.reliability

FAST_RECOVERY = {
    "DENOISE_LEASE_S": "2",
    "DENOISE_RECLAIM_INTERVAL_S": "0.5",
    "DENOISE_HEARTBEAT_INTERVAL_S": "0.5",
    "DENOISE_HEARTBEAT_TTL_S": "3",
    "DENOISE_PROGRESS_INTERVAL_S": "0",
}


class Stack:
    """redis-server (AOF, a data directory that survives a restart) + API + killable workers."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.redis_server = RedisServer(data_dir=tmp / "redis", appendonly=True)
        (tmp / "redis").mkdir()
        self.redis_server.start()
        self.redis = redis.Redis.from_url(self.redis_server.url, decode_responses=True)
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        env = service_env(self.redis_server.url, DENOISE_PORT=str(port), DENOISE_SYNC_TIMEOUT_S="5")
        self.api = self._spawn([sys.executable, "-m", "app"], env, "api")
        self.http = httpx.Client(base_url=self.url, timeout=30)

    def _spawn(self, args: list[str], env: dict[str, str], name: str) -> subprocess.Popen[bytes]:
        log = open(self.tmp / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        return subprocess.Popen(args, env=env, cwd=ROOT, stdout=log, stderr=log)

    def start_worker(self, name: str, **env_extra: str) -> subprocess.Popen[bytes]:
        env = service_env(
            self.redis_server.url,
            DENOISE_WORKER_NAME=name,
            DENOISE_METRICS_PORT="0",
            **(FAST_RECOVERY | env_extra),
        )
        process = self._spawn([sys.executable, "-m", "workers"], env, name)
        self.workers[name] = process
        wait_until(lambda: self.redis.exists(worker_heartbeat_key(name)), 120, f"worker {name}", process)
        return process

    def submit(self, body: dict[str, object]) -> str:
        response = self.http.post("/v1/generations", json=body, headers={"Prefer": "respond-async"})
        assert response.status_code == 202, response.text
        return str(response.json()["id"])

    def record(self, job_id: str) -> dict[str, object]:
        return {k: json.loads(v) for k, v in self.redis.hgetall(job_key(job_id)).items()}

    def wait_terminal(self, job_ids: list[str], timeout_s: float) -> dict[str, dict[str, object]]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            records = {job_id: self.record(job_id) for job_id in job_ids}
            if all(r.get("status") in TERMINAL_STATUSES for r in records.values()):
                return records
            time.sleep(0.2)
        unfinished = [j for j in job_ids if self.record(j).get("status") not in TERMINAL_STATUSES]
        raise TimeoutError(f"{len(unfinished)} jobs did not finish")

    def close(self) -> None:
        self.http.close()
        for process in [*self.workers.values(), self.api]:
            if process.poll() is None:
                process.terminate()
        for process in [*self.workers.values(), self.api]:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
        self.redis_server.stop()


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    built = Stack(tmp_path)
    try:
        wait_until(lambda: built.http.get("/healthz").status_code == 200, 60, "api", built.api)
        yield built
    finally:
        built.close()


def running_on(stack: Stack, job_ids: list[str], worker: str) -> list[str]:
    return [
        j for j in job_ids if (r := stack.record(j)).get("status") == "running" and r.get("worker") == worker
    ]


def test_kill_9_one_of_two_workers_during_50_jobs(stack: Stack) -> None:
    stack.start_worker("victim")
    stack.start_worker("survivor")
    jobs = [stack.submit({"class_label": i % 10, "seed": i, "steps": 30}) for i in range(50)]
    wait_until(lambda: len(running_on(stack, jobs, "victim")) >= 5, 60, "victim busy")
    stack.workers["victim"].send_signal(signal.SIGKILL)
    killed_at = time.time()

    records = stack.wait_terminal(jobs, timeout_s=600)
    statuses = [r["status"] for r in records.values()]
    assert statuses.count("succeeded") == 50, statuses
    taken_over = [r for r in records.values() if int(r["attempts"]) > 1]  # type: ignore[call-overload]
    assert taken_over, "the victim held no job when it died"
    assert all(r["result"]["worker"] == "survivor" for r in taken_over)  # type: ignore[index]
    assert all(len(r["result"]["images"]) == 1 for r in records.values())  # type: ignore[index]
    worst = max(float(r["finished_at"]) - killed_at for r in taken_over)  # type: ignore[arg-type]
    pending = stack.redis.xpending(jobs_stream_key("mnist-unet"), "workers")["pending"]
    assert pending == 0
    print(
        f"\nkill -9 of 1 of 2 workers, 50 jobs: 50/50 succeeded, {len(taken_over)} taken over, "
        f"0 duplicate results (one write per job), worst recovery {worst:.1f} s after the kill"
    )


def test_a_poison_job_is_dead_lettered_after_exactly_max_deliveries(stack: Stack) -> None:
    env = {"DENOISE_MAX_DELIVERIES": "2"}
    poison = ""
    for attempt, name in enumerate(("first", "second"), start=1):
        worker = stack.start_worker(name, **env)
        poison = poison or stack.submit({"class_label": 3, "seed": 1, "steps": 1000})
        job_id = poison
        wait_until(lambda n=name, j=job_id: running_on(stack, [j], n), 60, f"{name} runs it")  # type: ignore[misc]
        assert stack.record(poison)["attempts"] == attempt
        worker.send_signal(signal.SIGKILL)  # "crashes its worker every time"
    stack.start_worker("third", **env)
    bystander = stack.submit({"class_label": 4, "seed": 2, "steps": 10})
    records = stack.wait_terminal([poison, bystander], timeout_s=120)
    assert records[poison]["status"] == "failed"
    assert records[poison]["error"]["type"] == "PoisonJob"  # type: ignore[index]
    assert "started 2 times without finishing" in records[poison]["error"]["message"]  # type: ignore[index]
    assert records[bystander]["status"] == "succeeded"
    dead = [e for _id, e in stack.redis.xrange(dead_letter_stream_key("mnist-unet")) if e["job"] == poison]
    assert len(dead) == 1 and "max_deliveries 2" in dead[0]["reason"]
    print("\npoison job: dead-lettered after exactly 2 runs (third delivery refused); bystander succeeded")


def test_sigterm_with_10_jobs_in_flight_loses_nothing(stack: Stack) -> None:
    worker = stack.start_worker("draining")
    jobs = [stack.submit({"class_label": i, "seed": i, "steps": 150}) for i in range(10)]
    wait_until(lambda: len(running_on(stack, jobs, "draining")) == 10, 60, "10 in flight")
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=300) == 0
    records = stack.wait_terminal(jobs, timeout_s=10)
    statuses = [r["status"] for r in records.values()]
    assert statuses == ["succeeded"] * 10, statuses
    print("\nSIGTERM with 10 jobs in flight: 10/10 finished before exit, 0 lost, 0 failed")


def test_a_redis_restart_under_submissions_loses_no_accepted_job(stack: Stack) -> None:
    stack.start_worker("steady")
    accepted: list[str] = []
    refused: list[int] = []
    other: list[str] = []
    stop = threading.Event()

    def submit_forever() -> None:
        with httpx.Client(base_url=stack.url, timeout=5) as http:
            i = 0
            while not stop.is_set():
                i += 1
                try:
                    r = http.post(
                        "/v1/generations",
                        json={"class_label": i % 10, "seed": i, "steps": 5},
                        headers={"Prefer": "respond-async"},
                    )
                    if r.status_code == 202:
                        accepted.append(r.json()["id"])
                    elif r.status_code == 503:
                        refused.append(r.status_code)
                    else:
                        other.append(f"{r.status_code} {r.text[:100]}")
                except httpx.HTTPError as error:
                    other.append(repr(error))
                time.sleep(0.05)

    submitter = threading.Thread(target=submit_forever)
    submitter.start()
    time.sleep(2)
    stack.redis_server.stop()  # SIGTERM: Redis writes its AOF and exits
    time.sleep(3)
    stack.redis_server = RedisServer(port=stack.redis_server.port, data_dir=stack.tmp / "redis").start()
    restarted = time.monotonic()
    wait_until(lambda: stack.http.get("/readyz").status_code == 200, 60, "ready again")
    ready_after = time.monotonic() - restarted
    time.sleep(2)
    stop.set()
    submitter.join()

    records = stack.wait_terminal(accepted, timeout_s=300)
    lost = [j for j, r in records.items() if r.get("status") != "succeeded"]
    assert not lost and not other, (lost, other[:5])
    assert refused, "no request was refused while Redis was down"
    print(
        f"\nredis restart under submissions: {len(accepted)} accepted, all succeeded (0 lost); "
        f"{len(refused)} answered 503 while down; ready again {ready_after:.1f} s after the restart"
    )


def test_cancel_10_queued_and_10_running_jobs(stack: Stack) -> None:
    stack.start_worker("busy", DENOISE_MAX_BATCH="20")  # 10 guided images fill it
    running = [stack.submit({"class_label": i, "seed": i, "steps": 1000}) for i in range(10)]
    wait_until(lambda: len(running_on(stack, running, "busy")) == 10, 60, "10 running")
    queued = [stack.submit({"class_label": i, "seed": 100 + i, "steps": 5}) for i in range(10)]
    for job_id in queued:
        assert stack.http.delete(f"/v1/jobs/{job_id}").json()["status"] == "cancelled"
    asked = time.monotonic()
    for job_id in running:
        assert stack.http.delete(f"/v1/jobs/{job_id}").status_code == 202
    records = stack.wait_terminal(running, timeout_s=60)
    stopped_in = time.monotonic() - asked
    assert all(r["status"] == "cancelled" for r in records.values())
    steps = [int(r["progress"]["step"]) for r in records.values()]  # type: ignore[index]
    assert max(steps) < 1000
    time.sleep(1)
    never_started = [stack.record(j) for j in queued]
    assert all(r["status"] == "cancelled" and r["started_at"] is None for r in never_started)
    print(
        f"\ncancel 10 queued + 10 running: queued never started; running stopped at steps "
        f"{min(steps)}-{max(steps)} of 1000, all within {stopped_in:.2f} s of the last DELETE"
    )
