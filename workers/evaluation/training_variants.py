"""Noise-aware training, measured: the four training-objective variants side by side.

The variants (``mnist-unet-{cosine,linear}-{mse,fourier}``) share the recipe, seed and budget
and differ only in the training noise schedule and the loss, so any difference in their
samples is the objective's. Each is sampled with the same settings, seeds and metrics as the
trained-model part of the noise sweep (``workers.evaluation.noise_sweep``): class accuracy by
the SVC, Fréchet distance of PCA features to the 5,000 digits, the high-frequency energy
ratio (1 = like the data) and the mean Donoho noise estimate σ̂ of the 8-bit images. The
bundled ``mnist-unet`` (same recipe, 4,000 steps on the CPU) is listed for reference.

    python -m workers.evaluation.training_variants [--per-class 10] [--out eval/results/variants]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from workers.evaluation.noise_settings import Setting, SweepSize
from workers.evaluation.noise_sweep import DataReference, mean_noise_estimate, sample_setting, trained_metrics
from workers.models.loading import load_model
from workers.models.registry import lookup

VARIANTS = [
    f"mnist-unet-{schedule}-{loss}" for schedule in ("cosine", "linear") for loss in ("mse", "fourier")
]
SETTINGS = [
    Setting("trained", "ddim", 20, eta=0.0),  # the default request at 20 steps, guidance 2
    Setting("trained", "ddim", 20, eta=0.0, guidance_scale=1.0),
    Setting("trained", "ddpm", 30, variance_type="fixed_small"),
]


def evaluate(models: list[str], per_class: int) -> dict[str, Any]:
    data = DataReference.fit()
    size = SweepSize(tuple(range(10)), per_class, 1)
    rows = []
    for name in models:
        model = load_model(lookup(name), torch.device("cpu"), torch.float32)
        for setting in SETTINGS:
            sampled = sample_setting(model, setting, size)
            metrics = trained_metrics(sampled.pixels, sampled.labels, data)
            rows.append(
                {
                    "model": name,
                    "training_noise_schedule": model.info.training_noise_schedule,
                    "setting": setting.label,
                    "nfe": sampled.nfe,
                    **metrics,
                    "noise_estimate": mean_noise_estimate(sampled.pixels),
                    "seconds": round(sampled.seconds, 1),
                }
            )
            print(
                f"{name:28s} {setting.label:24s} acc {metrics['accuracy']:.3f} "
                f"FD {metrics['fd_features']:.2f} HF {metrics['hf_ratio']:.2f}",
                flush=True,
            )
    return {
        "classifier_held_out_accuracy": data.held_out_accuracy,
        "images_per_setting": 10 * per_class,
        "rows": rows,
    }


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "| model | setting | accuracy | FD (PCA features) | HF energy ratio | σ̂ (gray) |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for r in report["rows"]:
        lines.append(
            f"| {r['model']} | {r['setting']} | {r['accuracy']:.3f} | {r['fd_features']:.2f} "
            f"| {r['hf_ratio']:.3f} | {r['noise_estimate']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m workers.evaluation.training_variants", description=__doc__
    )
    parser.add_argument("--per-class", type=int, default=10)
    parser.add_argument("--models", nargs="+", default=[*VARIANTS, "mnist-unet"])
    parser.add_argument("--out", type=Path, default=Path("eval/results/variants"))
    args = parser.parse_args(argv)
    started = time.time()
    report = evaluate(args.models, args.per_class)
    report["seconds"] = round(time.time() - started, 1)
    table = markdown(report)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "variants.json").write_text(json.dumps(report, indent=2) + "\n")
    command = "python -m workers.evaluation.training_variants"
    (args.out / "variants.md").write_text(
        f"# Training-objective variants\n\nCommand: `{command}`; {report['seconds']} s; "
        f"{report['images_per_setting']} images per row (fixed seeds).\n\n{table}\n"
    )


if __name__ == "__main__":
    main()
