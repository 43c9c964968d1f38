"""Step-level batching against a request-level batcher, in-process, at equal load.

Requests with mixed step counts (10-50, uniform) arrive over time (Poisson arrivals at
each of ``--loads``, fractions of the engine's calibrated capacity); both servers run the same
arrivals on the same model with the same row budget:

* step-level (the engine as the worker drives it): every tick admits the requests that have
  arrived while rows are free, and a request leaves as soon as its images are done;
* request-level (as request-batching servers do): when idle, the batcher takes the requests
  that have arrived (up to the row budget) as one batch and runs it to completion; requests
  that arrive meanwhile wait for the next batch. In the peer's favour, a request's latency ends
  when its own images are done, not when the batch ends.

The two run one after the other, alternating which goes first, ``--rounds`` times.

    python -m bench.request_batching [--threads 1] [--requests 32] [--loads 0.8,1.5] [--rounds 2]

Prints a table and writes bench/results/request_batching.json.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bench.throughput import machine, percentile
from protocol.resolution import Limits, resolve_request
from protocol.schema import GenerationRequest, ResolvedConfig
from workers.models.loaded_model import LoadedModel
from workers.models.loading import load_model
from workers.models.registry import lookup
from workers.sampling.engine import SamplingEngine
from workers.sampling.state import SamplingState, new_states, rows_of

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Arrival:
    at_s: float  # after the start of the run
    job_id: str
    config: ResolvedConfig


def arrivals(model: LoadedModel, count: int, rate_per_s: float, seed: int) -> list[Arrival]:
    """``count`` DDIM requests at the model's default guidance, 10-50 steps, Poisson arrivals."""
    rng = random.Random(seed)
    info = model.info
    out, at = [], 0.0
    for i in range(count):
        request = GenerationRequest(
            class_label=i % 10, seed=seed * 1000 + i, steps=rng.randint(10, 50), sampler="ddim"
        )
        config = resolve_request(request, {info.name: info}, info.name, Limits.absolute())
        out.append(Arrival(at, f"r{i}", config))
        at += rng.expovariate(rate_per_s)
    return out


Server = Callable[[LoadedModel, list[Arrival], int], dict[str, float]]


def step_level(model: LoadedModel, plan: list[Arrival], max_rows: int) -> dict[str, float]:
    """The engine: admission at every tick, a request leaves when its images are done."""
    engine = SamplingEngine(model, max_rows)
    waiting, done = list(plan), {}
    started = time.perf_counter()
    while waiting or engine.rows_in_flight:
        now = time.perf_counter() - started
        while waiting and waiting[0].at_s <= now:
            states = new_states(waiting[0].job_id, waiting[0].config, model)
            if engine.rows_in_flight and rows_of(states) > engine.rows_free:
                break
            engine.admit(states)
            waiting.pop(0)
        if engine.tick() is None:
            time.sleep(max(0.0, min(0.05, waiting[0].at_s - now)) if waiting else 0)
        for job in engine.finished():
            done[job[0].job_id] = time.perf_counter() - started
    return done


def request_level(model: LoadedModel, plan: list[Arrival], max_rows: int) -> dict[str, float]:
    """Batches formed on arrival, each run to completion before the next is formed."""
    waiting, done = list(plan), {}
    started = time.perf_counter()
    while waiting:
        now = time.perf_counter() - started
        if waiting[0].at_s > now:
            time.sleep(min(0.05, waiting[0].at_s - now))
            continue
        batch: list[list[SamplingState]] = []
        while waiting and waiting[0].at_s <= now:
            states = new_states(waiting[0].job_id, waiting[0].config, model)
            if batch and sum(rows_of(s) for s in batch) + rows_of(states) > max_rows:
                break
            batch.append(states)
            waiting.pop(0)
        engine = SamplingEngine(model, max_rows)
        for states in batch:
            engine.admit(states)
        while engine.tick() is not None:  # the batch shrinks as short requests finish; none join
            for job in engine.finished():
                done[job[0].job_id] = time.perf_counter() - started
        for job in engine.finished():
            done[job[0].job_id] = time.perf_counter() - started
    return done


def summary(plan: list[Arrival], done: dict[str, float]) -> dict[str, float]:
    latencies = [done[a.job_id] - a.at_s for a in plan]
    return {
        "images_per_s": len(plan) / max(done.values()),
        "p50_s": statistics.median(latencies),
        "p95_s": percentile(latencies, 0.95),
    }


def capacity(model: LoadedModel, max_rows: int, mean_steps: float) -> float:
    """Images/s of the engine at a full budget of guided images (a calibration)."""
    states = [
        s
        for i, c in enumerate(arrivals(model, max_rows // 2, 1.0, 99))
        for s in new_states(f"c{i}", c.config, model)
    ]
    engine = SamplingEngine(model, max_rows)
    for state in states:
        engine.admit([state])
    ticks = [engine.tick() for _ in range(4)][1:]
    seconds = statistics.median(t.step_seconds for t in ticks if t)
    return (max_rows // 2) / (mean_steps * seconds)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.request_batching",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: a shared machine)")
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument(
        "--loads",
        default="0.8,1.5",
        help="offered loads, fractions of the engine's calibrated capacity (comma-separated; above 1: "
        "the servers run saturated and throughput is their capacity)",
    )
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--max-batch", type=int, default=32, help="rows per forward, both servers")
    parser.add_argument("--out", type=Path, default=RESULTS / "request_batching.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = load_model(lookup("mnist-unet"), torch.device("cpu"), torch.float32)
    full = capacity(model, args.max_batch, mean_steps=30)
    loads = [compare(model, float(load), full * float(load), args) for load in args.loads.split(",")]
    report = {
        "machine": machine("cpu") + " (shared with other jobs: timings are noisy)",
        "torch_threads": args.threads,
        "workload": f"{args.requests} DDIM requests, 10-50 steps (uniform), guided, Poisson arrivals; "
        f"calibrated capacity {full:.3f} images/s",
        "rounds": args.rounds,
        "loads": loads,
    }
    print("| load | server | images/s | p50 s | p95 s |\n| ---: | --- | ---: | ---: | ---: |")
    for entry in loads:
        for name, row in entry["rows"].items():
            print(f"| {entry['load']} | {name} | {row['images_per_s']} | {row['p50_s']} | {row['p95_s']} |")
    for entry in loads:
        print(
            f"load {entry['load']}: throughput ratio {entry['throughput_ratio_step_vs_request']}, "
            f"p95 ratio {entry['p95_ratio_step_vs_request']}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


def compare(model: LoadedModel, load: float, rate: float, args: argparse.Namespace) -> dict[str, Any]:
    """Both servers on the same arrivals at ``rate``, alternating which goes first, per round."""
    servers: list[tuple[str, Server]] = [("step-level", step_level), ("request-level", request_level)]
    results: dict[str, list[dict[str, float]]] = {name: [] for name, _ in servers}
    for r in range(args.rounds):
        plan = arrivals(model, args.requests, rate, seed=r)
        for name, server in servers if r % 2 == 0 else servers[::-1]:
            results[name].append(summary(plan, server(model, plan, args.max_batch)))
    rows: dict[str, dict[str, Any]] = {
        name: {key: round(statistics.median(run[key] for run in runs), 3) for key in runs[0]}
        for name, runs in results.items()
    }
    step, peer = rows["step-level"], rows["request-level"]
    return {
        "load": load,
        "arrivals_per_s": round(rate, 4),
        "rows": rows,
        "throughput_ratio_step_vs_request": round(step["images_per_s"] / peer["images_per_s"], 3),
        "p95_ratio_step_vs_request": round(step["p95_s"] / peer["p95_s"], 3),
        "runs": results,
    }


if __name__ == "__main__":
    main()
