"""Latency of one default request: in-process sampling vs the full service path.

*direct*: the engine called in-process, one request at a time (the floor for one request).
*service*: HTTP -> API -> Redis -> worker -> Redis -> API, with 1 and 4 concurrent clients.
Both run the same request (the bundled model's default: 50 DDIM steps, its default guidance)
with the same torch thread count, one after the other, never at the same time.

    python -m bench.latency [--requests 10] [--threads 2]

Prints a markdown table and writes bench/results/latency.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from devstack.redis_server import RedisServer, free_port

ROOT = Path(__file__).resolve().parent.parent
REQUEST = {"class_label": 7, "steps": 50, "sampler": "ddim"}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def summarise(
    name: str, clients: int, latencies: list[float], wall_s: float, images: int
) -> dict[str, object]:
    return {
        "setting": name,
        "clients": clients,
        "requests": len(latencies),
        "p50_ms": round(1000 * statistics.median(latencies), 1),
        "p95_ms": round(1000 * percentile(latencies, 0.95), 1),
        "images_per_s": round(images / wall_s, 3),
    }


def run_direct(requests: int, threads: int) -> dict[str, object]:
    import torch

    from app.contract import GenerationRequest
    from app.resolution import Limits, resolve_request
    from workers.images import png_base64, to_uint8
    from workers.models.loading import load_model
    from workers.models.registry import lookup
    from workers.sampling.engine import generate

    torch.set_num_threads(threads)
    model = load_model(lookup("mnist-unet"), torch.device("cpu"), torch.float32)
    limits = Limits(max_steps=1000, max_images=16, max_guidance_scale=30)
    latencies = []
    started_all = time.perf_counter()
    for i in range(requests):
        started = time.perf_counter()
        config = resolve_request(
            GenerationRequest(**REQUEST, seed=i),
            {model.info.name: model.info},  # type: ignore[arg-type]
            model.info.name,
            limits,
        )
        for state in generate(model, config):
            png_base64(to_uint8(state.latent))
        latencies.append(time.perf_counter() - started)
    return summarise("direct (in-process)", 1, latencies, time.perf_counter() - started_all, requests)


def run_service(url: str, requests: int, clients: int) -> dict[str, object]:
    def one(i: int) -> float:
        started = time.perf_counter()
        response = httpx.post(f"{url}/v1/generations", json={**REQUEST, "seed": i}, timeout=600)
        response.raise_for_status()
        assert response.json()["status"] == "succeeded"
        return time.perf_counter() - started

    started_all = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        latencies = list(pool.map(one, range(requests)))
    return summarise(
        "service (HTTP + Redis + worker)", clients, latencies, time.perf_counter() - started_all, requests
    )


def start_stack(threads: int) -> tuple[RedisServer, list[subprocess.Popen[bytes]], str]:
    server = RedisServer(appendonly=False).start()
    port = free_port()
    env = dict(
        os.environ,
        DENOISE_REDIS_URL=server.url,
        DENOISE_PORT=str(port),
        DENOISE_METRICS_PORT=str(free_port()),
        DENOISE_TORCH_THREADS=str(threads),
        HF_HUB_OFFLINE="1",
    )
    quiet = subprocess.DEVNULL
    processes = [
        subprocess.Popen([sys.executable, "-m", "workers"], env=env, cwd=ROOT, stdout=quiet, stderr=quiet),
        subprocess.Popen([sys.executable, "-m", "app"], env=env, cwd=ROOT, stdout=quiet, stderr=quiet),
    ]
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz").status_code == 200:
                return server, processes, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the service did not become ready")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.latency",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--requests", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2, help="torch threads, in-process and in the worker")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "latency.json")
    args = parser.parse_args(argv)

    rows = [run_direct(args.requests, args.threads)]
    server, processes, url = start_stack(args.threads)
    try:
        run_service(url, 2, 1)  # warm-up
        rows.append(run_service(url, args.requests, 1))
        rows.append(run_service(url, args.requests, 4))
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=60)
        server.stop()

    direct_p50 = float(rows[0]["p50_ms"])  # type: ignore[arg-type]
    report = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "request": REQUEST,
        "rows": rows,
        "latency_ratio_1_client": round(float(rows[1]["p50_ms"]) / direct_p50, 3),  # type: ignore[arg-type]
    }
    print("| setting | clients | requests | p50 ms | p95 ms | images/s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        print(
            f"| {row['setting']} | {row['clients']} | {row['requests']} | {row['p50_ms']} | {row['p95_ms']} "
            f"| {row['images_per_s']} |"
        )
    print(f"\nservice p50 at 1 client / direct p50: {report['latency_ratio_1_client']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
