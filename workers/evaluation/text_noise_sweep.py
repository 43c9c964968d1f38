"""What each sampler, step count and guidance does on the text-to-image model ``mnist-text``,
through the service's own engine (the loop that serves traffic, every image in each forward).

For each setting, ``per_digit`` images of each digit are drawn from the prompt "the digit {w}"
(image i of digit d has seed ``SEED + 1000 d + i`` in every setting, so settings differ only in
the reverse process) and judged by what a client sees: the share an SVC fitted on the training
digits reads as the asked digit (``class_accuracy.fit_digit_classifier``; 32×32 images cropped to
the 28×28 digit), the mean Donoho noise estimate σ̂ of the 8-bit images (gray levels, as every
response reports it), the high-frequency energy ratio against the data (``noise_metrics``; 1 = like
the data, > 1 noisier), the NFE and the wall time of the setting's engine run.

    python -m workers.evaluation.text_noise_sweep [--per-digit 8] [--out eval/results/noise/text]

Prints a markdown table and writes JSON and markdown to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from protocol.resolution import Limits, resolve_request
from protocol.schema import GenerationRequest
from workers.evaluation.class_accuracy import fit_digit_classifier
from workers.evaluation.noise_metrics import high_frequency_share
from workers.images import to_uint8
from workers.models.loading import load_model
from workers.models.registry import lookup
from workers.noise_estimate import noise_estimate
from workers.sampling.engine import SamplingEngine
from workers.sampling.state import new_states, rows_of
from workers.training.data import load_mnist_digits, to_unit_range
from workers.training.text_to_image.captions import digit_caption
from workers.training.text_to_image.vae import crop_to_digit

SEED = 31_000
MODEL = "mnist-text"
PROMPT = "the digit {w}"
DEFAULT_OUT = Path("eval/results/noise/text")
SETTINGS: list[dict[str, Any]] = [
    {"sampler": "ddim", "steps": 50},
    {"sampler": "ddim", "steps": 25},
    {"sampler": "ddim", "steps": 10},
    {"sampler": "ddim", "steps": 10, "eta": 1.0},
    {"sampler": "ddpm", "steps": 25},
    {"sampler": "ddpm", "steps": 25, "variance_type": "fixed_large"},
    {"sampler": "dpmpp_2m", "steps": 10},
    {"sampler": "dpmpp_2m", "steps": 10, "schedule": "karras"},
    {"sampler": "unipc", "steps": 10},
    {"sampler": "euler_a", "steps": 25},
    {"sampler": "ddim", "steps": 25, "guidance_scale": 1.0},
    {"sampler": "ddim", "steps": 25, "guidance_scale": 7.5},
]


def label(setting: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" if k not in ("sampler",) else str(v) for k, v in setting.items())


def run_setting(model: Any, setting: dict[str, Any], per_digit: int, classifier: Any) -> dict[str, Any]:
    states = []
    digits = []
    for digit in range(10):
        for i in range(per_digit):
            request = GenerationRequest.model_validate(
                {
                    "model": MODEL,
                    "prompt": digit_caption(digit, PROMPT),
                    "seed": SEED + 1000 * digit + i,
                    **setting,
                }
            )
            config = resolve_request(request, {MODEL: model.info}, MODEL, Limits.absolute())
            states += new_states(f"text-{digit}-{i}", config, model)
            digits.append(digit)
    started = time.perf_counter()
    SamplingEngine(model, max_rows=max(1, rows_of(states))).run_to_completion(states)
    wall_s = time.perf_counter() - started
    pixels = np.stack([to_uint8(s.image) for s in states if s.image is not None])
    crops = crop_to_digit(pixels)
    predicted = classifier.predict(to_unit_range(crops.reshape(len(crops), -1)))
    return {
        "setting": label(setting),
        "nfe": len(states[0].scheduler.timesteps),
        "accuracy": round(float(np.mean(predicted == np.array(digits))), 3),
        "noise_estimate": round(float(np.mean([noise_estimate(p) for p in pixels])), 3),
        "crops": crops,
        "wall_s": round(wall_s, 2),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-digit", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = load_model(lookup(MODEL), torch.device("cpu"), torch.float32)
    classifier, held_out = fit_digit_classifier()
    images, _ = load_mnist_digits()
    data_hf = high_frequency_share(to_unit_range(images[:500]))
    rows = []
    for setting in SETTINGS:
        row = run_setting(model, setting, args.per_digit, classifier)
        row["hf_ratio"] = round(high_frequency_share(to_unit_range(row.pop("crops"))) / data_hf, 3)
        rows.append(row)
        print(json.dumps(row), flush=True)
    table = [
        f'mnist-text, prompt "{PROMPT}", {args.per_digit} images per digit, default guidance '
        f"{model.info.default_guidance_scale:g} unless set; classifier {held_out:.1%} on held-out digits.",
        "",
        "| setting | NFE | accuracy | σ̂ (gray levels) | HF ratio | s |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    table += [
        f"| {r['setting']} | {r['nfe']} | {r['accuracy']:.3f} | {r['noise_estimate']:.2f} | "
        f"{r['hf_ratio']:.3f} | {r['wall_s']} |"
        for r in rows
    ]
    markdown = "\n".join(table) + "\n"
    print(markdown)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "text_sweep.md").write_text(markdown)
    (args.out / "text_sweep.json").write_text(
        json.dumps({"per_digit": args.per_digit, "rows": rows}, indent=1)
    )


if __name__ == "__main__":
    main()
