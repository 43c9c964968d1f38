"""Resident memory of a worker's forwards over many batch shapes, with and without heap trims.

Loads every bundled model (as one worker serving them all does), then runs passes over every
(model, batch size 1..``--max-rows``) forward in a random order, as a mixed load does. Resident
memory is read after every forward (a pass's mean and peak), and at each pass's end glibc's
in-use and free heap bytes and the pass's time. Each variant runs in a process of its own (an mmap
threshold must be set before the first malloc):

- ``none``: glibc's defaults (what the worker did before ``workers.heap_trim``);
- ``trim-10s`` / ``trim-2s``: ``HeapTrim`` at that interval, called after every forward as the
  worker's loop does (the worker's default is 10 s); ``trim-each``: after every forward;
- ``mmap-1MiB``: ``MALLOC_MMAP_THRESHOLD_=1048576``, buffers above 1 MiB mapped and unmapped
  each time (the other classic remedy).

It prints a table and writes ``bench/results/heap_trim.json``.

    python -m bench.heap_trim [--passes 4] [--max-rows 32]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "heap_trim.json"
VARIANTS: dict[str, dict[str, str]] = {
    "none": {},
    "trim-10s": {"BENCH_TRIM_INTERVAL_S": "10"},
    "trim-2s": {"BENCH_TRIM_INTERVAL_S": "2"},
    "trim-each": {"BENCH_TRIM_INTERVAL_S": "1e-9"},
    "mmap-1MiB": {"MALLOC_MMAP_THRESHOLD_": "1048576"},
}


class MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def heap_mb() -> tuple[float, float]:
    """glibc's (in-use, free) heap MB over all arenas (mallinfo2, glibc 2.33+)."""
    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = MallInfo2
    info = libc.mallinfo2()
    return info.uordblks / 2**20, info.fordblks / 2**20


def one_variant(passes: int, max_rows: int, seed: int) -> list[dict[str, float]]:
    """Runs in the child process: loads the models, runs the passes, returns a row per pass."""
    import torch

    from workers.heap_trim import HeapTrim, resident_bytes
    from workers.models.loading import load_model
    from workers.models.registry import load_registry

    torch.set_num_threads(1)
    trim = HeapTrim(float(os.environ.get("BENCH_TRIM_INTERVAL_S", "0")))
    registry = load_registry()
    models = [load_model(entry, torch.device("cpu"), torch.float32) for entry in registry.values()]
    forwards = [(model, rows) for model in models for rows in range(1, max_rows + 1)]
    rows_out = []
    rng = random.Random(seed)
    for number in range(passes):
        rng.shuffle(forwards)
        started = time.perf_counter()
        resident: list[int] = []  # after every forward: a trim's effect lasts only until the next ones
        for model, rows in forwards:
            shape = model.latent_shape(model.info.image_size, model.info.image_size)
            condition = model.warm_up_condition()
            latents = torch.randn(rows, *shape, generator=torch.Generator().manual_seed(rows))
            with torch.inference_mode():
                model.forward(latents, torch.full((rows,), 500.0), [condition] * rows)
            trim.maybe_trim()
            resident.append(resident_bytes() or 0)
        seconds = time.perf_counter() - started
        in_use, free = heap_mb()
        rows_out.append(
            {
                "pass": number,
                "seconds": seconds,
                "rss_mb": (resident_bytes() or 0) / 2**20,
                "rss_mean_mb": sum(resident) / len(resident) / 2**20,
                "rss_max_mb": max(resident) / 2**20,
                "heap_in_use_mb": in_use,
                "heap_free_mb": free,
            }
        )
    return rows_out


def run_variant(name: str, passes: int, max_rows: int) -> list[dict[str, float]]:
    env = dict(os.environ, **VARIANTS[name], HF_HUB_OFFLINE="1")
    command = [sys.executable, "-m", "bench.heap_trim", "--child", "--passes", str(passes)]
    command += ["--max-rows", str(max_rows)]
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    rows: list[dict[str, float]] = json.loads(done.stdout.strip().splitlines()[-1])
    return rows


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--passes", type=int, default=4)
    parser.add_argument("--max-rows", type=int, default=32)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(one_variant(args.passes, args.max_rows, seed=0)))
        return
    report: dict[str, Any] = {"passes": args.passes, "max_rows": args.max_rows, "variants": {}}
    print(f"{'variant':<10} " + " ".join(f"{'pass ' + str(p):>26}" for p in range(args.passes)))
    print(f"{'':<10} " + " ".join(f"{'RSS mean / max / free, s':>26}" for _ in range(args.passes)))
    for name in args.variants.split(","):
        rows = run_variant(name, args.passes, args.max_rows)
        report["variants"][name] = rows
        cells = [
            f"{r['rss_mean_mb']:>5.0f} / {r['rss_max_mb']:>5.0f} / {r['heap_free_mb']:>4.0f}, "
            f"{r['seconds']:>4.1f}"
            for r in rows
        ]
        print(f"{name:<10} " + " ".join(f"{c:>26}" for c in cells), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
