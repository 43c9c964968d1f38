"""Fixed requests whose PNG bytes are pinned (``png_sha256.json``): every sampler, schedule and
noise knob on both bundled models. A change that alters any of these bytes changed behaviour.

Record anew only on purpose, with ``python -m tests.golden.record``, and say why in the commit.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HASHES_FILE = Path(__file__).with_name("png_sha256.json")

_UNET: list[dict[str, Any]] = [
    {"class_label": 7, "steps": 12, "sampler": "ddim", "seed": 1},
    {"class_label": 3, "steps": 10, "sampler": "ddim", "eta": 1.0, "seed": 2},
    {"class_label": 4, "steps": 10, "sampler": "ddim", "eta": 0.5, "variance_bound": 0.1, "seed": 3},
    {"class_label": 5, "steps": 10, "sampler": "ddim", "eta": 1.0, "variance_scale": 0.5, "seed": 4},
    {
        "class_label": 6,
        "steps": 8,
        "sampler": "ddim",
        "clip_sample": True,
        "schedule": "quadratic",
        "seed": 5,
    },
    {
        "class_label": 1,
        "steps": 8,
        "sampler": "ddim",
        "dynamic_thresholding": True,
        "schedule": "cosine",
        "seed": 6,
    },
    {"class_label": 2, "steps": 8, "sampler": "ddim", "schedule": "leading", "seed": 7},
    {"class_label": 8, "steps": 8, "sampler": "ddim", "schedule": "linspace", "seed": 8},
    {"class_label": 9, "steps": 8, "sampler": "ddim", "schedule": "karras", "seed": 9},
    {"class_label": 0, "steps": 10, "sampler": "ddpm", "seed": 10},
    {"class_label": 1, "steps": 10, "sampler": "ddpm", "variance_type": "fixed_large", "seed": 11},
    {"class_label": 2, "steps": 10, "sampler": "ddpm", "variance_bound": 0.05, "seed": 12},
    {
        "class_label": 3,
        "steps": 10,
        "sampler": "ddpm",
        "variance_scale": 0.3,
        "clip_sample": True,
        "seed": 13,
    },
    {"class_label": 4, "steps": 8, "sampler": "ddpm", "schedule": "karras", "seed": 14},
    {"class_label": 5, "steps": 10, "sampler": "dpmpp_2m", "schedule": "karras", "seed": 15},
    {"class_label": 6, "steps": 10, "sampler": "dpmpp_2m", "dynamic_thresholding": True, "seed": 16},
    {"class_label": 7, "steps": 10, "sampler": "dpmpp_2m", "schedule": "cosine", "seed": 17},
    {"class_label": 8, "steps": 10, "sampler": "unipc", "seed": 18},
    {"class_label": 9, "steps": 10, "sampler": "unipc", "schedule": "leading", "seed": 19},
    {"class_label": 0, "steps": 10, "sampler": "euler", "seed": 20},
    {"class_label": 1, "steps": 10, "sampler": "euler", "schedule": "karras", "seed": 21},
    {"class_label": 2, "steps": 10, "sampler": "euler_a", "seed": 22},
    {"class_label": 3, "steps": 10, "sampler": "euler_a", "schedule": "linspace", "seed": 23},
    {
        "class_label": 4,
        "steps": 8,
        "sampler": "ddim",
        "guidance_scale": 4.0,
        "guidance_rescale": 0.7,
        "seed": 24,
    },
    {"class_label": 5, "steps": 8, "sampler": "ddim", "guidance_scale": 1.0, "seed": 25},
    {"steps": 8, "sampler": "ddim", "seed": 26},
    {"class_label": 6, "steps": 6, "sampler": "ddpm", "num_images": 3, "seed": 27},
]
_GAUSS: list[dict[str, Any]] = [
    {"class_label": 7, "steps": 10, "sampler": "ddim", "seed": 31},
    {"class_label": 2, "steps": 10, "sampler": "ddpm", "variance_type": "fixed_large", "seed": 32},
    {"class_label": 3, "steps": 10, "sampler": "ddim", "eta": 1.0, "variance_bound": 0.02, "seed": 33},
    {"class_label": 4, "steps": 8, "sampler": "unipc", "seed": 34},
    {"class_label": 5, "steps": 8, "sampler": "dpmpp_2m", "schedule": "karras", "seed": 35},
    {"class_label": 6, "steps": 8, "sampler": "euler_a", "num_images": 2, "seed": 36},
]

GOLDEN_REQUESTS: list[dict[str, Any]] = [{"model": "mnist-unet", **r} for r in _UNET] + [
    {"model": "mnist-gauss", **r} for r in _GAUSS
]


def request_key(request: dict[str, Any]) -> str:
    """A stable name for a request: its JSON with sorted keys."""
    return json.dumps(request, sort_keys=True, separators=(",", ":"))


def load_hashes() -> dict[str, list[str]]:
    return json.loads(HASHES_FILE.read_text())  # type: ignore[no-any-return]
