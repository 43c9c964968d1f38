"""The forward on the CPU: what each option of the worker's settings gains, and what it changes.

Options (each a worker setting, all off by default because each changes images in the last bits
or more): channels-last memory format, bfloat16 weights and inputs (``DENOISE_DTYPE``),
``torch.compile`` with inductor and dynamic shapes (``DENOISE_COMPILE``), inductor with weight
freezing (oneDNN fusion and prepacked weights), inductor with static shapes (a graph per batch
size: what bucketed batch sizes would gain) and compile + bfloat16.

Each option runs in its own process beside the default (inductor's caches and settings are per
process). For each: the compile or warm-up cost, the per-row forward time at ``--rows`` rows (interleaved
rounds, medians), and the images of fixed requests against the default's: the largest pixel
difference (0-255) and the PSNR.

    python -m bench.forward_options [--threads 1] [--rows 32] [--rounds 5]

Prints a table and writes bench/results/forward_options.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.throughput import machine
from protocol.resolution import Limits, resolve_request
from protocol.schema import GenerationRequest
from workers.images import to_uint8
from workers.models.loading import load_model
from workers.models.pixel_model import PixelModel
from workers.models.registry import lookup
from workers.sampling.engine import generate

RESULTS = Path(__file__).resolve().parent / "results"
REQUESTS: list[dict[str, Any]] = [
    {"class_label": d, "seed": 40 + d, **({"sampler": "ddim", "steps": 20} if d % 2 else {})}
    for d in range(8)
]  # the model's default request (UniPC, 8 steps) and 20 DDIM steps, guided


def variant(base: PixelModel, name: str) -> PixelModel:
    """A copy of the bundled model with option ``name`` applied to its network."""
    model = copy.copy(base)
    network: Any = copy.deepcopy(base.network)
    if "bf16" in name:
        network = network.to(torch.bfloat16)
        model.dtype = torch.bfloat16
    if name == "channels_last":
        network = network.to(memory_format=torch.channels_last)
    if "compile" in name:
        import torch._inductor.config as inductor

        inductor.freezing = name == "compile_freezing"
        network = torch.compile(network, dynamic=name != "compile_static")
    model.network = network
    return model


@torch.inference_mode()
def forward_seconds(model: PixelModel, rows: int, channels_last: bool) -> float:
    shape = model.latent_shape(28, 28)
    x = torch.randn(rows, *shape, generator=torch.Generator().manual_seed(1)).to(model.dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    t = torch.full((rows,), 500.0)
    started = time.perf_counter()
    model.forward(x, t, [d % 10 for d in range(rows)])
    return time.perf_counter() - started


def images(model: PixelModel) -> np.ndarray:  # type: ignore[type-arg]
    info = model.info
    out = []
    for body in REQUESTS:
        config = resolve_request(GenerationRequest(**body), {info.name: info}, info.name, Limits.absolute())
        out += [to_uint8(s.image) for s in generate(model, config) if s.image is not None]
    return np.stack(out).astype(np.int16)


def psnr(a: np.ndarray, b: np.ndarray) -> float | None:  # type: ignore[type-arg]
    """PSNR in dB against ``b`` (None: identical, an infinite PSNR)."""
    mse = float(np.mean((a.astype(np.float64) - b) ** 2))
    return None if mse == 0 else 10 * math.log10(255**2 / mse)


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.forward_options",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: a shared machine)")
    parser.add_argument("--rows", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--options",
        default="channels_last,bf16,compile,compile_freezing,compile_static,compile_bf16",
        help="comma-separated; each runs in its own process beside the float32 default (inductor's "
        "caches and settings are per process)",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=RESULTS / "forward_options.json")
    args = parser.parse_args(argv)
    if not args.child:
        return each_in_its_own_process(args)
    torch.set_num_threads(args.threads)
    base = load_model(lookup("mnist-unet"), torch.device("cpu"), torch.float32)
    assert isinstance(base, PixelModel)
    names = ["default", args.options]
    models: dict[str, PixelModel] = {}
    setup: dict[str, float] = {}
    for name in names:
        started = time.perf_counter()
        models[name] = base if name == "default" else variant(base, name)
        # the warm-up: compiles (batch 1 is specialised; static shapes: a graph per batch size)
        for batch in (2, args.rows) if name == "compile_static" else (1, 2, args.rows):
            forward_seconds(models[name], batch, name == "channels_last")
        setup[name] = time.perf_counter() - started
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(args.rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            times[name].append(forward_seconds(models[name], args.rows, name == "channels_last"))
    reference = images(base)
    table: list[dict[str, Any]] = []
    default_ms = 1000 * statistics.median(times["default"]) / args.rows if "default" in times else math.nan
    for name in names:
        pixels = reference if name == "default" else images(models[name])
        ms = 1000 * statistics.median(times[name]) / args.rows
        table.append(
            {
                "option": name,
                "setup_s": round(setup[name], 1),
                "forward_ms_per_row": round(ms, 3),
                "speedup_vs_default": round(default_ms / ms, 3),
                "max_pixel_diff": int(np.abs(pixels - reference).max()),
                "psnr_db_vs_default": _rounded(psnr(pixels, reference)),
            }
        )
    args.out.write_text(json.dumps(table) + "\n")


def each_in_its_own_process(args: argparse.Namespace) -> None:
    """Runs every option in a child process (beside the default, interleaved) and reports."""
    table: list[dict[str, Any]] = []
    for option in args.options.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "option.json"
            command = [sys.executable, "-m", "bench.forward_options", "--child", "--options", option]
            command += [
                "--threads",
                str(args.threads),
                "--rows",
                str(args.rows),
                "--rounds",
                str(args.rounds),
            ]
            subprocess.run([*command, "--out", str(out)], check=True, stdout=subprocess.DEVNULL)
            default, measured = json.loads(out.read_text())
        table.append({**measured, "default_ms_per_row_same_run": default["forward_ms_per_row"]})
    print("| option | setup s | forward ms/row | default ms/row | speed-up | max pixel diff | PSNR dB |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for entry in table:
        print(
            f"| {entry['option']} | {entry['setup_s']} | {entry['forward_ms_per_row']} "
            f"| {entry['default_ms_per_row_same_run']} | {entry['speedup_vs_default']} "
            f"| {entry['max_pixel_diff']} | {entry['psnr_db_vs_default']} |"
        )
    report = {
        "machine": machine("cpu") + " (shared with other jobs: timings are noisy)",
        "torch_threads": args.threads,
        "rows": args.rows,
        "images": f"{len(REQUESTS)} requests: {REQUESTS}",
        "method": "each option in its own process beside the float32 default, interleaved round by "
        "round; medians; images vs the default's",
        "options": table,
        "psnr_note": "null: identical images (infinite PSNR)",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
