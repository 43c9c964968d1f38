"""Images/s at 1 and 16 concurrent clients, latency and worker memory, for each model family the
service serves, each through the whole service (HTTP -> API -> Redis -> worker -> back).

Families and the model standing for each:

* pixel UNet: the bundled ``mnist-unet`` (class-conditional, 28×28, guided);
* closed-form: the bundled exact-score ``mnist-gauss`` (28×28);
* latent text UNet: the bundled ``mnist-text`` (Stable Diffusion layout, 32×32) when the
  registry has it, else a tiny random SD-layout folder built with diffusers' classes;
* latent class transformer (DiT): a tiny random DiT folder built with diffusers' classes (its
  speed does not depend on the weights' values).

Each family gets its own worker process (``DENOISE_MODELS`` = that model, so its memory is its
own) behind one API; requests use the model's default sampler and steps, its default guidance,
and vary the seed. Worker memory is its resident set size after the runs (``/proc``).

    python -m bench.families [--threads 2] [--requests 4]

Prints a markdown table and writes bench/results/families.json.
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
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from bench.throughput import percentile, wait_ready
from devstack.redis_server import RedisServer, free_port
from workers.models.registry import load_registry

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def family_requests(model: str, conditioning: str) -> dict[str, Any]:
    if conditioning == "prompt":
        return {"model": model, "prompt": "seven"}  # short: a fixture tokenizer spells it out
    if conditioning == "class_label":
        return {"model": model, "class_label": 7}
    return {"model": model}


def fixture_registry(folder: Path, want_text: bool) -> Path:
    """Tiny random pipeline folders for the families the bundled registry lacks."""
    from tests.fixtures.pipelines import build_dit, build_stable_diffusion

    lines = []
    build_dit(folder / "dit")
    lines.append('[models.bench-dit]\npath = "dit"\n')
    if want_text:
        build_stable_diffusion(folder / "sd")
        lines.append('[models.bench-sd]\npath = "sd"\n')
    registry = folder / "models.toml"
    registry.write_text("\n".join(lines))
    return registry


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@contextlib.contextmanager
def service(models: list[str], registry: Path, threads: int) -> Iterator[tuple[str, dict[str, int]]]:
    """redis-server, one worker per model and one API; yields the API URL and worker pids."""
    redis_server = RedisServer(appendonly=False).start()
    port = free_port()
    base = dict(
        os.environ,
        DENOISE_REDIS_URL=redis_server.url,
        DENOISE_PORT=str(port),
        DENOISE_REGISTRY_FILE=str(registry),
        DENOISE_TORCH_THREADS=str(threads),
        DENOISE_SYNC_TIMEOUT_S="600",
        DENOISE_METRICS_PORT="0",
        HF_HUB_OFFLINE="1",
    )
    quiet = subprocess.DEVNULL
    workers = {
        model: subprocess.Popen(
            [sys.executable, "-m", "workers"],
            env={**base, "DENOISE_MODELS": model, "DENOISE_WORKER_NAME": f"bench-{model}"},
            cwd=ROOT,
            stdout=quiet,
            stderr=quiet,
        )
        for model in models
    }
    api = subprocess.Popen([sys.executable, "-m", "app"], env=base, cwd=ROOT, stdout=quiet, stderr=quiet)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, "/readyz", [api, *workers.values()])
        deadline = time.monotonic() + 300
        while {m["name"] for m in httpx.get(f"{url}/v1/models").json()} < set(models):
            if time.monotonic() > deadline:
                raise RuntimeError("not every benchmark model registered")
            time.sleep(0.5)
        yield url, {model: process.pid for model, process in workers.items()}
    finally:
        for process in [api, *workers.values()]:
            process.terminate()
        for process in [api, *workers.values()]:
            process.wait(timeout=120)
        redis_server.stop()


def burst(url: str, body: dict[str, Any], clients: int, count: int, seed0: int) -> tuple[list[float], float]:
    def one(i: int) -> float:
        started = time.perf_counter()
        response = httpx.post(f"{url}/v1/generations", json={**body, "seed": seed0 + i}, timeout=900)
        response.raise_for_status()
        if response.json()["status"] != "succeeded":
            raise RuntimeError(response.text[:300])
        return time.perf_counter() - started

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        latencies = list(pool.map(one, range(count)))
    return latencies, time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--requests", type=int, default=4, help="requests per client")
    parser.add_argument("--out", type=Path, default=RESULTS / "families.json")
    args = parser.parse_args(argv)

    bundled = load_registry()
    text_model = "mnist-text" if "mnist-text" in bundled else "bench-sd"
    with tempfile.TemporaryDirectory() as tmp:
        registry = fixture_registry(Path(tmp), want_text=text_model == "bench-sd")
        families = {
            "pixel UNet": "mnist-unet",
            "closed-form mixture": "mnist-gauss",
            "latent text UNet": text_model,
            "latent DiT": "bench-dit",
        }
        rows = []
        with service(list(families.values()), registry, args.threads) as (url, pids):
            infos = {m["name"]: m for m in httpx.get(f"{url}/v1/models").json()}
            for family, model in families.items():
                info = infos[model]
                body = family_requests(model, info["conditioning"])
                burst(url, body, 1, 1, 0)  # warm: first-request costs out of the figures
                result: dict[str, Any] = {
                    "family": family,
                    "model": model,
                    "size": info["image_size"],
                    "sampler": info["default_sampler"],
                    "steps": info["default_steps"],
                    "guidance": info["default_guidance_scale"],
                }
                for clients in (1, 16):
                    latencies, wall = burst(url, body, clients, clients * args.requests, 100 * clients)
                    result[f"images_per_s_{clients}"] = round(len(latencies) / wall, 3)
                    result[f"p50_ms_{clients}"] = round(1000 * statistics.median(latencies), 1)
                    result[f"p95_ms_{clients}"] = round(1000 * percentile(latencies, 0.95), 1)
                result["worker_rss_mb"] = round(rss_mb(pids[model]), 1)
                rows.append(result)
                print(json.dumps(result), flush=True)

    print()
    print(
        "| family | model | size | sampler, steps | img/s 1 client | img/s 16 | p95 ms 16 | worker RSS MB |"
    )
    print("| --- | --- | ---: | --- | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(
            f"| {r['family']} | {r['model']} | {r['size']} | {r['sampler']}, {r['steps']} | "
            f"{r['images_per_s_1']} | {r['images_per_s_16']} | {r['p95_ms_16']} | {r['worker_rss_mb']} |"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "command": "python -m bench.families " + " ".join(argv or sys.argv[1:]),
                "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
                "threads": args.threads,
                "rows": rows,
            },
            indent=1,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
