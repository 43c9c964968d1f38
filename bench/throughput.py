"""The service against its floors and against the common peer design, in one run.

All settings run the bundled model's default request (50 deterministic DDIM steps at the
model's default guidance, one image) with the same torch thread count, one setting after
the other, never two at the same time:

* direct: the engine called in-process, one request at a time (the floor for one request);
* direct-batched: in-process, 16 requests advanced together, one forward per step (the
  floor for throughput);
* service: HTTP -> API -> Redis -> worker -> Redis -> API, with 1, 4 and 16 concurrent clients;
* peer: a FastAPI server whose handler runs each request's whole sampling loop on a thread
  pool (bench/peer_server.py), with 1 and 16 concurrent clients.

    python -m bench.throughput [--threads 2] [--rounds 2]

Prints a markdown table and the ratios, and writes bench/results/latest.json.
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
from typing import Any

import httpx

from devstack.redis_server import RedisServer, free_port

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def request_body(i: int) -> dict[str, Any]:
    """The default request; the digit and seed vary so no two requests are the same."""
    return {"class_label": i % 10, "seed": 1000 + i, "steps": 50, "sampler": "ddim"}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def row(setting: str, clients: int, latencies: list[float], wall_s: float, images: int) -> dict[str, Any]:
    return {
        "setting": setting,
        "clients": clients,
        "requests": len(latencies),
        "p50_ms": round(1000 * statistics.median(latencies), 1),
        "p95_ms": round(1000 * percentile(latencies, 0.95), 1),
        "images_per_s": round(images / wall_s, 3),
    }


# ------------------------------------------------------------------------------- in-process
def run_direct(threads: int, requests: int, batch: int) -> list[dict[str, Any]]:
    import torch

    from app.contract import GenerationRequest
    from app.resolution import Limits, resolve_request
    from workers.images import png_base64, to_uint8
    from workers.models.loading import load_model
    from workers.models.registry import lookup
    from workers.sampling.engine import SamplingEngine, new_states

    torch.set_num_threads(threads)
    model = load_model(lookup("mnist-unet"), torch.device("cpu"), torch.float32)
    limits = Limits(max_steps=1000, max_images=16, max_guidance_scale=30.0)
    engine = SamplingEngine(model)

    def states_for(indices: range) -> list[Any]:
        states = []
        for i in indices:
            request = GenerationRequest(**request_body(i))
            config = resolve_request(request, {model.info.name: model.info}, model.info.name, limits)
            states += new_states(f"direct-{i}", config, model)
        return states

    def finish(states: list[Any]) -> None:
        for state in states:
            png_base64(to_uint8(state.latent))

    engine.run(states_for(range(1)))  # warm-up
    latencies = []
    started_all = time.perf_counter()
    for i in range(requests):
        started = time.perf_counter()
        states = states_for(range(i, i + 1))
        engine.run(states)
        finish(states)
        latencies.append(time.perf_counter() - started)
    direct = row("direct", 1, latencies, time.perf_counter() - started_all, requests)

    batch_latencies = []
    rounds = 2
    started_all = time.perf_counter()
    for r in range(rounds):
        started = time.perf_counter()
        states = states_for(range(r * batch, (r + 1) * batch))
        engine.run(states)
        finish(states)
        batch_latencies += [time.perf_counter() - started] * batch
    batched = row(
        f"direct-batched ({batch}/forward)",
        batch,
        batch_latencies,
        time.perf_counter() - started_all,
        rounds * batch,
    )
    return [direct, batched]


# ------------------------------------------------------------------------------- over HTTP
def load(url: str, clients: int, requests: int, offset: int) -> tuple[list[float], float]:
    """``requests`` POSTs from ``clients`` concurrent clients; returns latencies and wall time."""

    def one(i: int) -> float:
        started = time.perf_counter()
        response = httpx.post(f"{url}/v1/generations", json=request_body(offset + i), timeout=900)
        response.raise_for_status()
        if response.json()["status"] != "succeeded":
            raise RuntimeError(response.text[:300])
        return time.perf_counter() - started

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        latencies = list(pool.map(one, range(requests)))
    return latencies, time.perf_counter() - started


def wait_ready(url: str, path: str, processes: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in processes):
            raise RuntimeError("a benchmark process exited early")
        try:
            if httpx.get(f"{url}{path}").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready")


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        process.wait(timeout=120)


def run_http(name: str, url: str, client_counts: list[int], rounds: int) -> list[dict[str, Any]]:
    load(url, 1, 2, offset=10_000)  # warm-up
    rows = []
    for clients in client_counts:
        requests = max(8, rounds * clients)
        latencies, wall = load(url, clients, requests, offset=100 * clients)
        rows.append(row(name, clients, latencies, wall, requests))
    return rows


def run_service(threads: int, max_batch: int, rounds: int) -> list[dict[str, Any]]:
    server = RedisServer(appendonly=False).start()
    port = free_port()
    env = dict(
        os.environ,
        DENOISE_REDIS_URL=server.url,
        DENOISE_PORT=str(port),
        HF_HUB_OFFLINE="1",
        DENOISE_METRICS_PORT=str(free_port()),
        DENOISE_TORCH_THREADS=str(threads),
        DENOISE_MAX_BATCH=str(max_batch),
    )
    quiet = subprocess.DEVNULL
    processes = [
        subprocess.Popen([sys.executable, "-m", "workers"], env=env, cwd=ROOT, stdout=quiet, stderr=quiet),
        subprocess.Popen([sys.executable, "-m", "app"], env=env, cwd=ROOT, stdout=quiet, stderr=quiet),
    ]
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, "/readyz", processes)
        return run_http("service", url, [1, 4, 16], rounds)
    finally:
        stop(processes)
        server.stop()


def run_peer(threads: int, rounds: int) -> list[dict[str, Any]]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.peer_server", "--port", str(port), "--threads", str(threads)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=dict(os.environ, HF_HUB_OFFLINE="1"),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, "/healthz", [process])
        return run_http("peer (thread pool)", url, [1, 16], rounds)
    finally:
        stop([process])


def ratios(rows: list[dict[str, Any]]) -> dict[str, float]:
    def find(setting: str, clients: int) -> dict[str, Any]:
        return next(r for r in rows if r["setting"].startswith(setting) and r["clients"] == clients)

    direct, batched = find("direct", 1), next(r for r in rows if r["setting"].startswith("direct-batched"))
    service_1, service_16 = find("service", 1), find("service", 16)
    peer_16 = find("peer", 16)
    return {
        "latency_ratio_1_client": round(service_1["p50_ms"] / direct["p50_ms"], 3),
        "throughput_ratio_16_vs_direct_batched": round(
            service_16["images_per_s"] / batched["images_per_s"], 3
        ),
        "throughput_ratio_16_vs_direct": round(service_16["images_per_s"] / direct["images_per_s"], 3),
        "model_headroom_batched_vs_direct": round(batched["images_per_s"] / direct["images_per_s"], 3),
        "throughput_ratio_16_vs_peer": round(service_16["images_per_s"] / peer_16["images_per_s"], 3),
        "p95_ratio_16_vs_peer": round(service_16["p95_ms"] / peer_16["p95_ms"], 3),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.throughput",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--threads", type=int, default=2, help="torch threads everywhere (default 2)")
    parser.add_argument("--rounds", type=int, default=2, help="requests per client in the HTTP settings")
    parser.add_argument("--direct-requests", type=int, default=8)
    parser.add_argument("--out", type=Path, default=RESULTS / "latest.json")
    args = parser.parse_args(argv)

    started = time.time()
    rows = run_direct(args.threads, args.direct_requests, batch=16)
    rows += run_service(args.threads, max_batch=32, rounds=args.rounds)
    rows += run_peer(args.threads, args.rounds)
    report: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "torch_threads": args.threads,
        "request": request_body(0) | {"class_label": "0..9", "seed": "varies"},
        "rows": rows,
        **ratios(rows),
        "seconds": round(time.time() - started, 1),
    }
    print("| setting | clients | requests | p50 ms | p95 ms | images/s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(
            f"| {r['setting']} | {r['clients']} | {r['requests']} | {r['p50_ms']} | {r['p95_ms']} "
            f"| {r['images_per_s']} |"
        )
    print()
    for key, value in report.items():
        if key.endswith(("_client", "_batched", "_direct", "_peer", "_vs_direct")):
            print(f"{key}: {value}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
