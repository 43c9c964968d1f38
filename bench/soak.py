"""A soak with faults: mixed load for a long time while workers are killed and Redis restarts.

Starts its own redis-server (AOF on, so a restart keeps the jobs), two workers serving every model
of the registry, and the API. Clients then send a mix for ``--minutes``: every served model, every
sampler, 1-16 images, cancels, short deadlines (``timeout_s``) and duplicate idempotent retries (the
same ``Idempotency-Key`` twice at once). Every ``--fault-interval-s`` a fault is injected, in turn:
``kill -9`` of a worker (restarted at once; its jobs are taken over after the lease), then a Redis
restart (stopped for 2 s).

Every accepted job is followed until it ends; at the end each one is terminal or counted lost
(which must be 0). It prints and writes (``bench/results/soak.json``) the requests sent, succeeded,
failed by reason, lost, the p50/p95 from submission to a terminal state, and the memory slope
(RSS over finished jobs, after warm-up: MB per 1,000 jobs) of the worker that is never killed,
the API and Redis.

    python -m bench.soak [--minutes 60] [--clients 4] [--fault-interval-s 60]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis

from bench.redis_census import census
from devstack.__main__ import worker_models
from devstack.redis_server import RedisServer, free_port
from protocol.schema import TERMINAL_STATUSES

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "soak.json"
ASYNC = {"Prefer": "respond-async"}
WARM_UP_FRACTION = 0.2  # memory samples of each process's first fifth are left out of its slope


@dataclass
class Tally:
    sent: int = 0
    accepted: set[str] = field(default_factory=set)
    outcomes: dict[str, str] = field(default_factory=dict)  # job id -> terminal status or error type
    refused: Counter[str] = field(default_factory=Counter)  # HTTP status or exception, by reason
    latencies: list[float] = field(default_factory=list)  # submission -> succeeded, seconds
    duplicate_mismatches: int = 0
    finished: int = 0


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class Stack:
    """redis-server, two workers and the API, each a child process, with faults on demand."""

    def __init__(self, log_dir: Path, worker_env: dict[str, str] | None = None) -> None:
        self.log_dir = log_dir
        self.worker_env = worker_env or {}  # extra DENOISE_ settings of both workers
        self.redis = RedisServer(appendonly=True, data_dir=log_dir / "redis")
        self.redis.data_dir.mkdir()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        self.api: subprocess.Popen[bytes] | None = None

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DENOISE_")}
        env.update(DENOISE_REDIS_URL=self.redis.url, DENOISE_TORCH_THREADS="1", PYTHONUNBUFFERED="1")
        env.update(HF_HUB_OFFLINE="1", **extra)
        return env

    def spawn(self, name: str, module: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - the child holds it
        return subprocess.Popen([sys.executable, "-m", module], env=env, cwd=ROOT, stdout=log, stderr=log)

    def start_worker(self, name: str) -> None:
        env = self.env(
            DENOISE_WORKER_NAME=name,
            DENOISE_METRICS_PORT="0",
            DENOISE_LEASE_S="5",
            DENOISE_RECLAIM_INTERVAL_S="1",
            DENOISE_PROGRESS_INTERVAL_S="0",
            **worker_models(os.environ),
            **self.worker_env,
        )
        self.workers[name] = self.spawn(name, "workers", env)

    def start(self) -> None:
        self.redis.start()
        for name in ("soak-steady", "soak-victim"):
            self.start_worker(name)
        self.api = self.spawn("api", "app", self.env(DENOISE_PORT=str(self.port), DENOISE_SYNC_TIMEOUT_S="5"))
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError("the stack did not become ready within 180 s")

    def kill_worker(self) -> None:
        victim = self.workers["soak-victim"]
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        self.start_worker("soak-victim")

    def restart_redis(self) -> None:
        assert self.redis.process is not None
        self.redis.process.terminate()  # SIGTERM: the AOF is flushed
        self.redis.process.wait()
        time.sleep(2)
        self.redis.start()

    def pids(self) -> dict[str, int]:
        assert self.api is not None and self.redis.process is not None
        return {
            "worker": self.workers["soak-steady"].pid,
            "api": self.api.pid,
            "redis": self.redis.process.pid,
        }

    def stop(self) -> None:
        for process in [self.api, *self.workers.values()]:
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    process.kill()
        if self.redis.process is not None:
            self.redis.process.terminate()
            self.redis.process.wait()


def request_body(model: dict[str, Any], sampler: str, rng: random.Random) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": model["name"],
        "sampler": sampler,
        "steps": rng.randint(2, 6),
        "num_images": rng.randint(1, 16),
        "seed": rng.randrange(2**32),
    }
    if model["conditioning"] == "class_label":
        body["class_label"] = rng.randrange(model.get("num_classes") or 10)
    elif model["conditioning"] == "prompt":
        body["prompt"] = f"a handwritten {rng.randrange(10)}"
    return body


async def submit(
    client: httpx.AsyncClient, body: dict[str, Any], tally: Tally, key: str | None = None
) -> str | None:
    headers = dict(ASYNC, **({"Idempotency-Key": key} if key else {}))
    tally.sent += 1
    try:
        response = await client.post("/v1/generations", json=body, headers=headers)
    except httpx.HTTPError as error:
        tally.refused[f"transport: {type(error).__name__}"] += 1
        return None
    if response.status_code in (200, 202):
        job_id: str = response.json()["id"]
        tally.accepted.add(job_id)
        return job_id
    tally.refused[f"HTTP {response.status_code}"] += 1
    return None


async def follow(
    client: httpx.AsyncClient, job_id: str, started: float, tally: Tally, give_up: float
) -> None:
    """Polls a job until it is terminal (or ``give_up``, monotonic); records its outcome."""
    while time.monotonic() < give_up:
        try:
            response = await client.get(f"/v1/jobs/{job_id}")
        except httpx.HTTPError:
            await asyncio.sleep(0.5)
            continue
        if response.status_code == 200:
            view = response.json()
            if view["status"] in TERMINAL_STATUSES:
                error = view.get("error") or {}
                tally.outcomes[job_id] = error.get("type") or view["status"]
                tally.finished += 1
                if view["status"] == "succeeded":
                    tally.latencies.append(time.monotonic() - started)
                return
        await asyncio.sleep(0.3)


async def one_request(
    client: httpx.AsyncClient,
    models: list[dict[str, Any]],
    samplers: list[str],
    rng: random.Random,
    tally: Tally,
    give_up: float,
) -> None:
    body = request_body(rng.choice(models), rng.choice(samplers), rng)
    kind = rng.choices(["plain", "cancel", "deadline", "retry"], weights=[5, 1, 1, 1])[0]
    if kind == "deadline":
        body["timeout_s"] = rng.choice([0.05, 0.3, 1.0])
    started = time.monotonic()
    if kind == "retry":
        key = uuid.uuid4().hex
        first, second = await asyncio.gather(*(submit(client, body, tally, key) for _ in range(2)))
        if first and second and first != second:
            tally.duplicate_mismatches += 1
        job_id = first or second
    else:
        job_id = await submit(client, body, tally)
    if job_id is None:
        return
    if kind == "cancel":
        await asyncio.sleep(rng.uniform(0, 1.0))
        with contextlib.suppress(httpx.HTTPError):  # the job is followed as any other
            await client.delete(f"/v1/jobs/{job_id}")
    await follow(client, job_id, started, tally, give_up)


async def client_loop(
    url: str, seed: int, stop_at: float, tally: Tally, models: list[dict[str, Any]], samplers: list[str]
) -> None:
    rng = random.Random(seed)
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        while time.monotonic() < stop_at:
            await one_request(client, models, samplers, rng, tally, give_up=stop_at + 300)


def slope_mb_per_1000(samples: list[tuple[int, int, float]]) -> float | None:
    """MB per 1,000 finished jobs: the least-squares slope over each process's samples after its
    warm-up (a restarted process starts a new series), weighted by their number."""
    by_pid: dict[int, list[tuple[int, float]]] = {}
    for pid, jobs, rss in samples:
        by_pid.setdefault(pid, []).append((jobs, rss))
    slopes, weights = [], []
    for series in by_pid.values():
        kept = series[int(len(series) * WARM_UP_FRACTION) :]
        xs = [jobs for jobs, _ in kept]
        if len(kept) < 3 or max(xs) == min(xs):
            continue
        slope = statistics.linear_regression(xs, [rss for _, rss in kept]).slope
        slopes.append(1000 * slope)
        weights.append(len(kept))
    if not slopes:
        return None
    return sum(s * w for s, w in zip(slopes, weights, strict=True)) / sum(weights)


async def soak(stack: Stack, minutes: float, clients: int, fault_interval_s: float) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=stack.url, timeout=10) as http:
        models = (await http.get("/v1/models")).json()
        samplers = [sampler["name"] for sampler in (await http.get("/v1/samplers")).json()]
    tally = Tally()
    started = time.monotonic()
    stop_at = started + 60 * minutes
    memory: dict[str, list[tuple[int, int, float]]] = {"worker": [], "api": [], "redis": []}
    faults: list[str] = []
    loops = [
        asyncio.create_task(client_loop(stack.url, seed, stop_at, tally, models, samplers))
        for seed in range(clients)
    ]
    next_fault = started + fault_interval_s
    while time.monotonic() < stop_at:
        await asyncio.sleep(2)
        for role, pid in stack.pids().items():
            rss = rss_mb(pid)
            if rss is not None:
                memory[role].append((pid, tally.finished, rss))
        if time.monotonic() >= next_fault:
            fault = "kill -9 worker" if len(faults) % 2 == 0 else "restart redis"
            await asyncio.to_thread(stack.kill_worker if fault == "kill -9 worker" else stack.restart_redis)
            faults.append(f"{time.monotonic() - started:.0f} s: {fault}")
            next_fault += fault_interval_s
    await asyncio.gather(*loops)
    redis_keys = await asyncio.to_thread(census, redis.Redis.from_url(stack.redis.url))
    lost = sorted(tally.accepted - set(tally.outcomes))
    latencies = sorted(tally.latencies)
    outcomes = Counter(tally.outcomes.values())
    return {
        "minutes": minutes,
        "clients": clients,
        "models": [model["name"] for model in models],
        "samplers": samplers,
        "faults": faults,
        "requests_sent": tally.sent,
        "jobs_accepted": len(tally.accepted),
        "succeeded": outcomes.pop("succeeded", 0),
        "ended_otherwise": dict(outcomes),
        "refused": dict(tally.refused),
        "lost": len(lost),
        "lost_ids": lost[:20],
        "idempotent_retries_split": tally.duplicate_mismatches,
        "p50_s": statistics.median(latencies) if latencies else None,
        "p95_s": latencies[int(0.95 * (len(latencies) - 1))] if latencies else None,
        "memory_slope_mb_per_1000_jobs": {role: slope_mb_per_1000(s) for role, s in memory.items()},
        "rss_mb_last": {role: (s[-1][2] if s else None) for role, s in memory.items()},
        # (finished jobs, MB) every ~2 s, thinned to at most 200 points per role: the curves behind the slopes
        "rss_mb_by_finished_jobs": {role: thinned(s, 200) for role, s in memory.items()},
        "redis_keys": redis_keys,
        "redis_bytes_per_accepted_job": redis_keys["used_memory_bytes"] / max(1, len(tally.accepted)),
    }


def thinned(samples: list[tuple[int, int, float]], points: int) -> list[tuple[int, int, float]]:
    """Every k-th sample (pid, finished jobs, MB), so that at most ``points`` remain, the last kept."""
    step = max(1, -(-len(samples) // points))
    return samples[::-1][::step][::-1]


def print_report(report: dict[str, Any]) -> None:
    print(f"soak: {report['minutes']} min, {report['clients']} clients, faults: {len(report['faults'])}")
    for name in ("requests_sent", "jobs_accepted", "succeeded", "lost", "idempotent_retries_split"):
        print(f"  {name:<28} {report[name]}")
    print(f"  {'ended otherwise':<28} {report['ended_otherwise']}")
    print(f"  {'refused':<28} {report['refused']}")
    p50, p95 = report["p50_s"], report["p95_s"]
    print(f"  {'submit -> succeeded p50/p95':<28} {p50 or 0:.2f} s / {p95 or 0:.2f} s")
    for role, slope in report["memory_slope_mb_per_1000_jobs"].items():
        shown = "n/a" if slope is None else f"{slope:+.2f} MB / 1000 jobs"
        print(f"  {'memory ' + role:<28} {shown} (last {report['rss_mb_last'][role] or 0:.0f} MB)")
    keys = report["redis_keys"]
    print(
        f"  {'redis used_memory':<28} {keys['used_memory_bytes'] / 2**20:.1f} MB, "
        f"{report['redis_bytes_per_accepted_job'] / 1024:.1f} KB per accepted job"
    )
    for kind, tally in keys["by_kind"].items():
        megabytes = tally["bytes"] / 2**20
        print(
            f"    {kind:<26} {tally['keys']:>7} keys {megabytes:8.2f} MB, {tally['without_ttl']} without TTL"
        )


def main(argv: list[str] | None = None) -> int:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--fault-interval-s", type=float, default=60.0)
    parser.add_argument(
        "--heap-trim-interval-s",
        type=float,
        default=None,
        help="the workers' DENOISE_HEAP_TRIM_INTERVAL_S (default: theirs, 10; 0: no trims)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    worker_env = {}
    if args.heap_trim_interval_s is not None:
        worker_env["DENOISE_HEAP_TRIM_INTERVAL_S"] = str(args.heap_trim_interval_s)
    with tempfile.TemporaryDirectory(prefix="denoise-soak-") as tmp:
        stack = Stack(Path(tmp), worker_env)
        try:
            stack.start()
            report = asyncio.run(soak(stack, args.minutes, args.clients, args.fault_interval_s))
            report["worker_settings"] = worker_env
        finally:
            stack.stop()
    print_report(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    clean = report["redis_keys"]["per_job_keys_without_ttl"] == 0
    return 0 if report["lost"] == 0 and report["idempotent_retries_split"] == 0 and clean else 1


if __name__ == "__main__":
    sys.exit(main())
