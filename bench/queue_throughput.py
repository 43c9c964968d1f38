"""What one Redis carries: the service's own queue code, enqueue and dequeue rates.

Runs against a local redis-server (AOF on, as in production) with no model at all:

* **enqueue**: ``app.job_queue.JobQueue.submit`` (the API's atomic submit script: queue cap,
  job record, stream entry), from ``--concurrency`` concurrent coroutines, as the API does;
* **dequeue + finish**: ``workers.job_store.WorkerJobStore`` doing a worker's whole Redis work
  per job: read from the consumer group, START, the per-step cancel-flag round trips
  (``--steps``, one per denoising step, as a busy worker does), the result write (FINISH with
  a small PNG), ACK and the pub/sub notice. Several worker loops run as threads.

It prints jobs/s for both and Redis' memory per finished job record, and writes JSON. With
the model's own rate per GPU (images/s from ``make bench`` or ``bench/results/cuda*.json``)
this says how many GPU workers one Redis can feed.

    python -m bench.queue_throughput [--jobs 3000] [--steps 50] [--workers 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import threading
import time
from pathlib import Path
from typing import Any

import redis
import redis.asyncio as aioredis

from app.job_queue import JobQueue
from devstack.redis_server import RedisServer
from protocol.resolution import Limits, resolve_request
from protocol.schema import (
    GeneratedImage,
    GenerationRequest,
    JobResult,
    ModelInfo,
    Progress,
    ResolvedConfig,
    Timings,
)
from workers.job_store import StreamReader, WorkerJobStore

PNG_BASE64 = "iVBORw0KGgo" + "A" * 600  # about the size of a 28x28 digit PNG in base64
MODEL = ModelInfo(
    name="mnist-unet",
    conditioning="class_label",
    num_classes=10,
    image_size=28,
    channels=1,
    default_guidance_scale=2.0,
    training_noise_schedule="squaredcos_cap_v2",
    num_train_timesteps=1000,
    prediction_type="v_prediction",
)


def default_config() -> ResolvedConfig:
    request = GenerationRequest(class_label=7, steps=50, seed=1)
    return resolve_request(request, {MODEL.name: MODEL}, MODEL.name, Limits.absolute())


async def enqueue(url: str, jobs: int, concurrency: int) -> float:
    client = aioredis.Redis.from_url(url, decode_responses=True)
    queue = JobQueue(client, job_ttl_s=3600, models_cache_s=1, max_queued_jobs=jobs + 1)
    config = default_config()
    done = 0

    async def submitter() -> None:
        nonlocal done
        while done < jobs:
            done += 1
            await queue.submit(config, timeout_s=600)

    started = time.perf_counter()
    await asyncio.gather(*(submitter() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    await client.aclose()
    return elapsed


def dequeue(url: str, jobs: int, workers: int, steps: int) -> float:
    result = JobResult(
        images=[
            GeneratedImage(
                index=0, seed=0, class_label=1, width=28, height=28, png_base64=PNG_BASE64, noise_estimate=0.0
            )
        ],
        config=default_config(),
        timings=Timings(queue_wait_ms=0, inference_ms=1, step_ms_mean=1, encode_ms=0, total_ms=1),
        worker="bench",
    )
    finished = 0
    lock = threading.Lock()

    def loop(name: str) -> None:
        nonlocal finished
        client = redis.Redis.from_url(url, decode_responses=True)
        store = WorkerJobStore(client, "mnist-unet", name, job_ttl_s=3600)
        reader = StreamReader(client, name)
        while True:
            with lock:
                if finished >= jobs:
                    return
            entries = reader.read_new({store.stream: 16}, block_ms=200).get(store.stream, [])
            if not entries:
                continue
            ids = [e.job_id for e in entries if e.job_id]
            for entry in entries:
                store.start(entry.job_id or "")
            for _ in range(steps):  # one round trip per denoising step for the whole batch
                reader.read_new_and_cancel_flags({}, ids)
            for entry in entries:
                store.succeed(entry.job_id or "", result, Progress(step=steps, total=steps))
                store.ack(entry.entry_id)
            with lock:
                finished += len(entries)

    threads = [threading.Thread(target=loop, args=(f"bench-{i}",)) for i in range(workers)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.queue_throughput", description=__doc__)
    parser.add_argument("--jobs", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--out", type=Path, default=Path("bench/results/queue.json"))
    args = parser.parse_args(argv)

    with RedisServer(appendonly=True) as server:
        admin = redis.Redis.from_url(server.url, decode_responses=True)
        WorkerJobStore(admin, "mnist-unet", "setup", job_ttl_s=3600).ensure_group()
        memory_before = int(admin.info("memory")["used_memory"])
        enqueue_s = asyncio.run(enqueue(server.url, args.jobs, args.concurrency))
        dequeue_s = dequeue(server.url, args.jobs, args.workers, args.steps)
        memory_after = int(admin.info("memory")["used_memory"])
        report: dict[str, Any] = {
            "machine": f"{platform.machine()}, Python {platform.python_version()}, redis-server AOF on",
            "jobs": args.jobs,
            "enqueue_jobs_per_s": round(args.jobs / enqueue_s, 1),
            "enqueue_concurrency": args.concurrency,
            "dequeue_finish_jobs_per_s": round(args.jobs / dequeue_s, 1),
            "worker_loops": args.workers,
            "round_trips_per_batch_of_16": args.steps,
            "bytes_per_finished_job": round((memory_after - memory_before) / args.jobs),
        }
    for key, value in report.items():
        print(f"{key}: {value}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
