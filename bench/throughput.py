"""The service against its floors and against the common peer design, in one run.

All settings run the bundled model's former default request (50 deterministic DDIM steps at the
model's default guidance, one image) with the same torch thread count; the batched floor and the
service at 16 clients also run the model's measured default request (no sampler, steps or
schedule sent: ``default_*`` in its ``denoise_model.json``), whose quality the noise sweep found
equal to the 50 DDIM steps' within the estimator's noise, for the **quality-matched throughput**:
images/s of the default request over images/s of 50-step DDIM. All servers are up
for the whole run, and the settings are interleaved (one request, or one burst of concurrent
requests, of each in turn, rotating the order), so that every setting sees the same machine;
no two settings ever run at the same time:

* direct: the engine called in-process, one request at a time (the floor for one request);
* direct-batched: in-process, 16 requests advanced together, one forward per step (the
  floor for throughput); both drive the worker's engine loop with its row budget
  (``--max-batch``, default 32: the 16 guided default requests fill one forward);
* service: HTTP -> API -> Redis -> worker -> Redis -> API, with 1, 4 and 16 concurrent clients;
* peer: a FastAPI server whose handler runs each request's whole sampling loop on a thread
  pool (bench/peer_server.py), with 1 and 16 concurrent clients.

    python -m bench.throughput [--threads 2] [--rounds 3] [--device cuda --dtype bfloat16]

Prints a markdown table and the ratios, and writes bench/results/latest.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from devstack.redis_server import RedisServer, free_port

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


OLD_DEFAULT = {"steps": 50, "sampler": "ddim"}  # the default request before defaults were measured
SWEEP = ROOT / "eval" / "results" / "noise" / "noise_sweep.json"


def request_body(i: int, model_default: bool = False) -> dict[str, Any]:
    """50 DDIM steps (or the model's default request); digit and seed vary so no two are the same."""
    return {"class_label": i % 10, "seed": 1000 + i, **({} if model_default else OLD_DEFAULT)}


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
class Direct:
    """The engine called in-process: the floors the service is measured against."""

    def __init__(self, threads: int, device: str, dtype: str, max_rows: int) -> None:
        import torch

        from protocol.resolution import Limits
        from workers.models.loading import load_model
        from workers.models.registry import lookup
        from workers.sampling.engine import SamplingEngine

        torch.set_num_threads(threads)
        self.torch = torch
        self.model = load_model(lookup("mnist-unet"), torch.device(device), getattr(torch, dtype))
        self.limits = Limits.absolute()
        self.engine = SamplingEngine(self.model, max_rows)  # the worker's budget

    def run(self, indices: range, model_default: bool = False) -> float:
        """Samples the requests ``indices`` together (one forward per step within the row
        budget, as the worker does) and encodes them."""
        from protocol.resolution import resolve_request
        from protocol.schema import GenerationRequest
        from workers.images import png_base64, to_uint8
        from workers.sampling.state import new_states

        started = time.perf_counter()
        states = []
        for i in indices:
            request = GenerationRequest(**request_body(i, model_default))
            info = self.model.info
            config = resolve_request(request, {info.name: info}, info.name, self.limits)
            states += new_states(f"direct-{i}", config, self.model)
        self.engine.run_to_completion(states)
        for state in states:
            assert state.image is not None  # decoded by the engine when it finished
            png_base64(to_uint8(state.image))
        return time.perf_counter() - started


# ------------------------------------------------------------------------------- over HTTP
def post(url: str, i: int, model_default: bool = False) -> float:
    started = time.perf_counter()
    response = httpx.post(f"{url}/v1/generations", json=request_body(i, model_default), timeout=900)
    response.raise_for_status()
    if response.json()["status"] != "succeeded":
        raise RuntimeError(response.text[:300])
    return time.perf_counter() - started


def concurrent(
    url: str, clients: int, indices: range, model_default: bool = False
) -> tuple[list[float], float]:
    """POSTs ``indices`` from ``clients`` concurrent clients; returns latencies and wall time."""
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        latencies = list(pool.map(lambda i: post(url, i, model_default), indices))
    return latencies, time.perf_counter() - started


def wait_ready(url: str, path: str, processes: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + 300
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


@contextlib.contextmanager
def servers(threads: int, device: str, dtype: str, max_batch: int) -> Iterator[tuple[str, str]]:
    """The service (redis-server, one worker, the API) and the peer server, both idle until used."""
    redis_server = RedisServer(appendonly=False).start()
    port, peer_port = free_port(), free_port()
    env = dict(
        os.environ,
        DENOISE_REDIS_URL=redis_server.url,
        DENOISE_PORT=str(port),
        HF_HUB_OFFLINE="1",
        DENOISE_METRICS_PORT=str(free_port()),
        DENOISE_TORCH_THREADS=str(threads),
        DENOISE_MAX_BATCH=str(max_batch),
        DENOISE_DEVICE=device,
        DENOISE_DTYPE=dtype,
        DENOISE_SYNC_TIMEOUT_S="600",  # a burst on a loaded machine may take longer than the default
    )
    quiet = subprocess.DEVNULL
    peer_args = ["--port", str(peer_port), "--threads", str(threads), "--device", device, "--dtype", dtype]
    processes = [
        subprocess.Popen([sys.executable, "-m", "workers"], env=env, cwd=ROOT, stdout=quiet, stderr=quiet),
        subprocess.Popen([sys.executable, "-m", "app"], env=env, cwd=ROOT, stdout=quiet, stderr=quiet),
        subprocess.Popen(
            [sys.executable, "-m", "bench.peer_server", *peer_args],
            env=env,
            cwd=ROOT,
            stdout=quiet,
            stderr=quiet,
        ),
    ]
    service, peer = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{peer_port}"
    try:
        wait_ready(service, "/readyz", processes)
        wait_ready(peer, "/healthz", processes)
        yield service, peer
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=120)
        redis_server.stop()


def measure(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every setting, interleaved round by round so that they all see the same machine."""
    direct = Direct(args.threads, args.device, args.dtype, args.max_batch)
    latencies: dict[tuple[str, int], list[float]] = defaultdict(list)
    walls: dict[tuple[str, int], float] = defaultdict(float)
    images: dict[tuple[str, int], int] = defaultdict(int)

    def record(key: tuple[str, int], lat: list[float], wall: float) -> None:
        latencies[key] += lat
        walls[key] += wall
        images[key] += len(lat)

    with servers(args.threads, args.device, args.dtype, args.max_batch) as (service, peer):
        direct.run(range(1))  # warm-up, each setting
        post(service, 9_999)
        post(peer, 9_998)
        one_client: list[tuple[str, Callable[[int], float]]] = [
            ("direct", lambda i: direct.run(range(i, i + 1))),
            ("service", lambda i: post(service, i)),
            ("peer", lambda i: post(peer, i)),
        ]
        # one client: one request of each setting in turn
        for n in range(args.single_requests):
            for name, one in one_client[n % 3 :] + one_client[: n % 3]:
                took = one(100 + n)
                record((name, 1), [took], took)

        per_burst = args.clients * args.per_client

        def batched(first: int, model_default: bool = False) -> tuple[list[float], float]:
            # the floor: each client's requests run in lockstep, one batch of `clients` at a time
            lat: list[float] = []
            began = time.perf_counter()
            for k in range(args.per_client):
                chunk = range(first + k * args.clients, first + (k + 1) * args.clients)
                took = direct.run(chunk, model_default)
                lat += [took] * args.clients
            return lat, time.perf_counter() - began

        crowd: list[tuple[str, int, Callable[[int], tuple[list[float], float]]]] = [
            ("direct-batched", args.clients, batched),
            ("service", args.clients, lambda i: concurrent(service, args.clients, range(i, i + per_burst))),
            ("peer", args.clients, lambda i: concurrent(peer, args.clients, range(i, i + per_burst))),
            ("service", 4, lambda i: concurrent(service, 4, range(i, i + 4 * args.per_client))),
            ("direct-batched:default", args.clients, lambda i: batched(i, model_default=True)),
            (
                "service:default",
                args.clients,
                lambda i: concurrent(service, args.clients, range(i, i + per_burst), model_default=True),
            ),
        ]
        for r in range(args.rounds):  # many clients: one burst of each setting in turn
            turn = r % len(crowd)
            for k, (name, clients, burst) in enumerate(crowd[turn:] + crowd[:turn]):
                lat, wall = burst(1000 + 200 * r + 50 * k)
                record((name, clients), lat, wall)

    labels = {
        "direct": "direct",
        "direct-batched": f"direct-batched ({args.clients}/forward)",
        "service": "service",
        "peer": "peer (thread pool)",
        "direct-batched:default": f"direct-batched ({args.clients}/forward), default request",
        "service:default": "service, default request",
    }
    order = [("direct", 1), ("direct-batched", args.clients), ("service", 1), ("service", 4)]
    order += [("service", args.clients), ("peer", 1), ("peer", args.clients)]
    order += [("direct-batched:default", args.clients), ("service:default", args.clients)]
    return [
        row(
            labels[name], clients, latencies[(name, clients)], walls[(name, clients)], images[(name, clients)]
        )
        for name, clients in order
    ]


def ratios(rows: list[dict[str, Any]], clients: int) -> dict[str, float]:
    def find(setting: str, clients: int) -> dict[str, Any]:
        return next(r for r in rows if r["setting"].startswith(setting) and r["clients"] == clients)

    def exact(setting: str) -> dict[str, Any]:
        return next(r for r in rows if r["setting"] == setting)

    direct, batched = find("direct", 1), exact(f"direct-batched ({clients}/forward)")
    service_1, service_16 = find("service", 1), _service(rows, clients)
    peer_16 = find("peer", clients)
    batched_default = exact(f"direct-batched ({clients}/forward), default request")
    service_default = exact("service, default request")
    return {
        "quality_matched_throughput_ratio_direct_batched": round(
            batched_default["images_per_s"] / batched["images_per_s"], 3
        ),
        "quality_matched_throughput_ratio_service_16": round(
            service_default["images_per_s"] / service_16["images_per_s"], 3
        ),
        "latency_ratio_1_client": round(service_1["p50_ms"] / direct["p50_ms"], 3),
        "throughput_ratio_16_vs_direct_batched": round(
            service_16["images_per_s"] / batched["images_per_s"], 3
        ),
        "throughput_ratio_16_vs_direct": round(service_16["images_per_s"] / direct["images_per_s"], 3),
        "model_headroom_batched_vs_direct": round(batched["images_per_s"] / direct["images_per_s"], 3),
        "throughput_ratio_16_vs_peer": round(service_16["images_per_s"] / peer_16["images_per_s"], 3),
        "p95_ratio_16_vs_peer": round(service_16["p95_ms"] / peer_16["p95_ms"], 3),
    }


def _service(rows: list[dict[str, Any]], clients: int) -> dict[str, Any]:
    return next(r for r in rows if r["setting"] == "service" and r["clients"] == clients)


def measured_quality() -> dict[str, Any] | None:
    """The trained model's FD and accuracy of the default request and of 50 DDIM steps, from the
    noise sweep's report (``make eval``), when it has been run."""
    if not SWEEP.exists():
        return None
    choice = json.loads(SWEEP.read_text()).get("answers", {}).get("default_choice_trained")
    if not choice:
        return None
    keep = ("sampler", "schedule", "steps", "nfe", "value", "accuracy")
    return {
        "source": str(SWEEP.relative_to(ROOT)),
        "metric": f"{choice['metric']} (noise {choice['noise']:.2f})",
        **{
            key: {k: choice[key][k] for k in keep if k in choice[key]}
            for key in ("default request", "old default")
        },
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.throughput",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--threads", type=int, default=2, help="torch threads everywhere (default 2)")
    parser.add_argument("--single-requests", type=int, default=9, help="one-client requests per setting")
    parser.add_argument("--rounds", type=int, default=3, help="bursts of concurrent requests per setting")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients in a burst")
    parser.add_argument(
        "--per-client", type=int, default=2, help="requests each client sends back to back in a burst"
    )
    parser.add_argument("--max-batch", type=int, default=32, help="the worker's rows per forward")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--out", type=Path, default=RESULTS / "latest.json")
    args = parser.parse_args(argv)

    started = time.time()
    rows = measure(args)
    report: dict[str, Any] = {
        "machine": machine(args.device),
        "torch_threads": args.threads,
        "dtype": args.dtype,
        "request": request_body(0) | {"class_label": "0..9", "seed": "varies"},
        "default_request": request_body(0, model_default=True) | {"class_label": "0..9", "seed": "varies"},
        "quality": measured_quality(),
        "method": "settings interleaved: one request (or one burst) of each in turn, rotating the order",
        "rows": rows,
        **ratios(rows, args.clients),
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
        if "ratio" in key or "headroom" in key or key == "quality":
            print(f"{key}: {value}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.out}")


def machine(device: str) -> str:
    described = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    if device == "cuda":
        import torch

        described += f", {torch.cuda.get_device_name()}"
    return described


if __name__ == "__main__":
    main()
