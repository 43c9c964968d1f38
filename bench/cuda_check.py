"""GPU checks of the worker's performance settings (run where CUDA is present).

1. **No host-device sync in the step loop**: every sampler runs a few ticks of the engine
   (the worker's loop: batch selection, forward, scheduler steps) under
   ``torch.cuda.set_sync_debug_mode("warn")``; each synchronising call (a ``.item()``, a
   blocking copy, ``nonzero``) is counted per step.
2. **Forward and step time by setting**: dtype (float32 / float16 / bfloat16), channels-last
   and ``torch.compile``, at several rows per forward, timed with CUDA events after warm-up.

    python -m bench.cuda_check [--out bench/results/cuda.json]

Prints markdown tables and writes JSON. On a machine without CUDA it only runs part 2 on
the CPU (float32) so the script itself stays tested.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from protocol.resolution import Limits, resolve_request
from protocol.schema import GenerationRequest
from workers.models.loading import LoadedModel, load_model
from workers.models.registry import lookup
from workers.sampling.engine import SamplingEngine, TickStats
from workers.sampling.state import SamplingState, new_states, rows_of

LIMITS = Limits.absolute()
SAMPLERS: list[dict[str, Any]] = [
    {"sampler": "ddim"},
    {"sampler": "ddim", "eta": 1.0, "variance_bound": 0.1},
    {"sampler": "ddpm"},
    {"sampler": "dpmpp_2m", "schedule": "karras"},
    {"sampler": "unipc"},
    {"sampler": "euler"},
    {"sampler": "euler_a"},
    {"sampler": "ddim", "dynamic_thresholding": True},
    {"sampler": "ddim", "guidance_rescale": 0.7},
]


def states_for(model: LoadedModel, knobs: dict[str, Any], count: int, steps: int) -> list[SamplingState]:
    states = []
    for i in range(count):
        request = GenerationRequest(class_label=i % 10, seed=i, steps=steps, **knobs)
        config = resolve_request(request, {model.info.name: model.info}, model.info.name, LIMITS)
        states += new_states(f"check-{i}", config, model)
    return states


def engine_for(model: LoadedModel, states: list[SamplingState]) -> SamplingEngine:
    """An engine with ``states`` admitted (one job each) and a budget of all their rows."""
    engine = SamplingEngine(model, max_rows=rows_of(states))
    for state in states:
        engine.admit([state])
    return engine


def tick(engine: SamplingEngine) -> TickStats:
    stats = engine.tick()
    if stats is None:
        raise RuntimeError("nothing left in flight: give the states more steps")
    return stats


def syncs_per_step(model: LoadedModel) -> list[dict[str, Any]]:
    """Synchronising calls per engine step, by sampler (after one warm-up step)."""
    rows = []
    for knobs in SAMPLERS:
        engine = engine_for(model, states_for(model, knobs, count=4, steps=10))
        tick(engine)  # first step: schedulers set up their step index
        torch.cuda.synchronize()
        steps = 5
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                for _ in range(steps):
                    tick(engine)
            finally:
                torch.cuda.set_sync_debug_mode("default")
        # PyTorch announces the debug mode once ("a prototype feature"): that notice is no sync
        syncs = [w for w in caught if "prototype feature" not in str(w.message)]
        messages = sorted({str(w.message).splitlines()[0][:120] for w in syncs})
        rows.append({"knobs": knobs, "syncs_per_step": len(syncs) / steps, "calls": messages})
    return rows


def time_setting(
    dtype: torch.dtype, channels_last: bool, compile_unet: bool, rows_list: list[int], device: torch.device
) -> list[dict[str, Any]]:
    started = time.perf_counter()
    model = load_model(lookup("mnist-unet"), device, dtype, channels_last, compile_unet)
    load_s = time.perf_counter() - started
    out = []
    for rows in rows_list:
        engine = engine_for(
            model, states_for(model, {"sampler": "ddim"}, count=max(1, rows // 2), steps=1000)
        )
        for _ in range(5):  # warm-up (and, with compile, the recompiles for this shape)
            stats = tick(engine)
        repeats = 20
        if device.type == "cuda":
            torch.cuda.synchronize()
        begun = time.perf_counter()
        for _ in range(repeats):
            stats = tick(engine)
        if device.type == "cuda":
            torch.cuda.synchronize()
        step_ms = 1000 * (time.perf_counter() - begun) / repeats
        out.append(
            {
                "dtype": str(dtype).removeprefix("torch."),
                "channels_last": channels_last,
                "compile": compile_unet,
                "rows": stats.rows,
                "step_ms": round(step_ms, 3),
                "ms_per_row": round(step_ms / stats.rows, 4),
                "load_s": round(load_s, 2),
            }
        )
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.cuda_check", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("bench/results/cuda.json"))
    parser.add_argument("--rows", type=int, nargs="+", default=[2, 16, 32, 64, 128])
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile settings")
    args = parser.parse_args(argv)
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    report: dict[str, Any] = {
        "machine": f"{platform.machine()}, torch {torch.__version__}"
        + (f", {torch.cuda.get_device_name()}" if cuda else ", no CUDA"),
    }
    if cuda:
        model = load_model(lookup("mnist-unet"), device, torch.float32)
        report["syncs"] = syncs_per_step(model)
        print("| sampler knobs | syncs per step | calls |\n| --- | ---: | --- |")
        for r in report["syncs"]:
            print(f"| {json.dumps(r['knobs'])} | {r['syncs_per_step']:g} | {'; '.join(r['calls'])} |")
    settings = [(torch.float32, False, False)]
    if cuda:
        settings += [(torch.float16, False, False), (torch.bfloat16, False, False)]
        settings += [(torch.bfloat16, True, False)]
        if not args.no_compile:
            settings += [(torch.float32, False, True), (torch.bfloat16, True, True)]
    timings = []
    for dtype, channels_last, compile_unet in settings:
        timings += time_setting(dtype, channels_last, compile_unet, args.rows, device)
    report["timings"] = timings
    print("\n| dtype | channels_last | compile | rows | step ms | ms per row |")
    print("| --- | --- | --- | ---: | ---: | ---: |")
    for t in timings:
        print(
            f"| {t['dtype']} | {t['channels_last']} | {t['compile']} | {t['rows']} | {t['step_ms']} "
            f"| {t['ms_per_row']} |"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
