"""The limit, measured: the network's arithmetic per row, this machine's attainable rate for the
same kind of work, and the fraction of it that the engine's step reaches.

1. FLOPs per row of every bundled model's denoising network (the text model's UNet with its
   cross-attention included), counted by torch's ``FlopCounterMode`` on a forward of a few rows
   (a multiply-add counts 2).
2. The attainable rate: the best FLOP/s of a large 3×3 convolution (the UNet's widest level:
   64 → 64 channels at 28×28) and of a large matmul, at the batch sizes the engine uses.
3. The engine's step on the bundled model at 1, 8, 32 and 128 rows (unguided 50-step DDIM and
   UniPC images, one row each, a few ticks each): step time, the forward's share, and achieved FLOP/s =
   rows × FLOPs per row / step time, as a fraction of the attainable rate. Both step modes
   (``vectorised``, ``per_image``) run interleaved, so their non-forward time compares in one run.

    python -m bench.flops [--threads 1] [--repeats 3]

Prints tables and writes bench/results/flops.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from bench.throughput import machine
from protocol.resolution import Limits, resolve_request
from protocol.schema import GenerationRequest, SamplerName
from workers.models.loaded_model import LoadedModel
from workers.models.loading import load_model
from workers.models.registry import BUNDLED_REGISTRY, load_registry, lookup
from workers.sampling.engine import SamplingEngine, StepMode
from workers.sampling.state import new_states

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
ROWS = (1, 8, 32, 128)
STEP_MODES: tuple[StepMode, ...] = ("vectorised", "per_image")
SAMPLERS: tuple[SamplerName, ...] = ("ddim", "unipc")  # single-step and multistep


# ------------------------------------------------------------------------------- 1. FLOPs per row
def forward_inputs(model: LoadedModel, rows: int) -> tuple[torch.Tensor, torch.Tensor, list[Any]]:
    shape = model.latent_shape(model.info.image_size, model.info.image_size)
    latents = torch.randn(rows, *shape, generator=torch.Generator().manual_seed(0))
    timesteps = torch.full((rows,), model.info.num_train_timesteps // 2, dtype=torch.float32)
    return latents.to(model.dtype), timesteps, [model.warm_up_condition()] * rows


@torch.inference_mode()
def flops_per_row(model: LoadedModel, rows: int = 4) -> float:
    latents, timesteps, conditions = forward_inputs(model, rows)
    counter = FlopCounterMode(display=False)
    with counter:
        model.forward(latents, timesteps, conditions)
    return counter.get_total_flops() / rows


# ------------------------------------------------------------------------------- 2. attainable rate
def best_seconds(run: Any, repeats: int) -> float:
    run()  # warm-up: kernel selection, allocator
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)  # the attainable rate: the best of a few, as the machine is shared


@torch.inference_mode()
def attainable(repeats: int) -> dict[str, Any]:
    """FLOP/s of a 64→64 3×3 convolution at 28×28 for each engine batch size, and of a 2048³
    matmul; the best of them is the attainable rate."""
    conv = torch.nn.Conv2d(64, 64, 3, padding=1).eval()
    rates: dict[str, float] = {}
    for rows in ROWS:
        x = torch.randn(rows, 64, 28, 28)
        flops = 2 * rows * 64 * 64 * 9 * 28 * 28
        rates[f"conv3x3_64ch_28px_{rows}rows"] = flops / best_seconds(lambda x=x: conv(x), repeats)
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    rates["matmul_2048"] = 2 * 2048**3 / best_seconds(lambda: a @ b, repeats)
    best = max(rates, key=lambda k: rates[k])
    return {
        "rates_gflops": {k: round(v / 1e9, 2) for k, v in rates.items()},
        "best": best,
        "flops": rates[best],
    }


# ------------------------------------------------------------------------------- 3. the engine's step
def step_times(
    model: LoadedModel, sampler: SamplerName, rows: int, step_mode: StepMode, ticks: int
) -> tuple[float, float, float]:
    """Median step, forward and non-forward seconds of ``ticks`` ticks with ``rows`` unguided
    50-step images."""
    info = model.info
    engine = SamplingEngine(model, max_rows=rows, step_mode=step_mode)
    for i in range(rows):
        request = GenerationRequest(
            class_label=i % 10, seed=7000 + i, steps=50, sampler=sampler, guidance_scale=1.0
        )
        config = resolve_request(request, {info.name: info}, info.name, Limits.absolute())
        engine.admit(new_states(f"flops-{i}", config, model))
    stats = [engine.tick() for _ in range(ticks + 1)][1:]  # the first tick builds the step plans
    return (
        statistics.median(s.step_seconds for s in stats if s),
        statistics.median(s.forward_seconds for s in stats if s),
        # the rest of the tick, tick by tick (a difference of medians would mix two ticks' noise)
        statistics.median(s.step_seconds - s.forward_seconds for s in stats if s),
    )


def measure_steps(
    model: LoadedModel, flops: float, peak: dict[str, Any], repeats: int
) -> list[dict[str, Any]]:
    rate = peak["flops"]
    samples: dict[tuple[SamplerName, int, StepMode], list[tuple[float, float, float]]] = {}
    for r in range(repeats):  # interleaved: each setting once per round, the modes' order alternating
        for sampler in SAMPLERS:
            for rows in ROWS:
                for mode in STEP_MODES if r % 2 == 0 else STEP_MODES[::-1]:
                    ticks = 2 if rows >= 128 else 3
                    measured = step_times(model, sampler, rows, mode, ticks)
                    samples.setdefault((sampler, rows, mode), []).append(measured)
    out = []
    for (sampler, rows, mode), values in samples.items():
        step = statistics.median(v[0] for v in values)
        forward = statistics.median(v[1] for v in values)
        rest = statistics.median(v[2] for v in values)
        achieved = rows * flops / step
        out.append(
            {
                "sampler": sampler,
                "rows": rows,
                "step_mode": mode,
                "step_ms": round(1000 * step, 2),
                "forward_ms_per_row": round(1000 * forward / rows, 3),
                "non_forward_ms": round(1000 * rest, 2),
                "non_forward_share": round(rest / step, 4),
                "achieved_gflops": round(achieved / 1e9, 2),
                "fraction_of_attainable": round(achieved / rate, 4),
                # against the same convolution at the same batch size (cache effects included)
                "fraction_of_conv_same_rows": round(
                    achieved / (1e9 * peak["rates_gflops"][f"conv3x3_64ch_28px_{rows}rows"]), 4
                ),
            }
        )
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.flops",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: a shared machine)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds of the step measurement")
    parser.add_argument("--out", type=Path, default=RESULTS / "flops.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.time()

    models: dict[str, LoadedModel] = {}
    per_row: dict[str, float] = {}
    for name in load_registry(BUNDLED_REGISTRY):
        models[name] = load_model(lookup(name), torch.device("cpu"), torch.float32)
        per_row[name] = flops_per_row(models[name])
    peak = attainable(repeats=5)
    steps = measure_steps(models["mnist-unet"], per_row["mnist-unet"], peak, args.repeats)

    print("| model | MFLOP per row |\n| --- | ---: |")
    for name, flops in per_row.items():
        print(f"| {name} | {flops / 1e6:.1f} |")
    print(f"\nattainable: {peak['flops'] / 1e9:.1f} GFLOP/s ({peak['best']}); all: {peak['rates_gflops']}\n")
    print(
        "| sampler | rows | step mode | step ms | forward ms/row | non-forward ms | share | GFLOP/s "
        "| fraction | of conv |"
    )
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for s in steps:
        print(
            f"| {s['sampler']} | {s['rows']} | {s['step_mode']} | {s['step_ms']} | {s['forward_ms_per_row']} "
            f"| {s['non_forward_ms']} | {s['non_forward_share']:.1%} | {s['achieved_gflops']} "
            f"| {s['fraction_of_attainable']:.1%} | {s['fraction_of_conv_same_rows']:.1%} |"
        )
    report = {
        "machine": machine("cpu") + " (shared with other jobs: timings are noisy)",
        "torch_threads": args.threads,
        "flops_per_row": {name: round(f) for name, f in per_row.items()},
        "attainable": peak,
        "step": {
            "model": "mnist-unet",
            "request": "ddim or unipc, 50 steps, unguided (1 row per image)",
            "rows": steps,
        },
        "method": "step modes interleaved round by round; medians of the rounds; attainable = best of 5",
        "seconds": round(time.time() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
