"""How much noise each reverse-process setting leaves in its samples, on two models.

    python -m workers.evaluation.noise_sweep [--quick] [--out eval/results/noise] [--models exact trained]

1. The exact-score model ``mnist-gauss`` (``workers.models.gaussian_mixture``): the class
   distribution N(μ_c, Σ_c) is known, so for each requested class c (then averaged over a few
   classes) we report the variance ratios of the samples in the low- and high-variance
   directions and the Fréchet distance (FD) to N(μ_c, Σ_c) with exact reference statistics
   (``noise_metrics``). FD is biased at a fixed sample size n < D = 784, so the row
   "exact draws" gives the FD of n draws of the true distribution (``sample_x0``): the
   estimator's floor, as mean ± sd over independent draws. At such n the sample FD ranks
   over-smoothed samples *better* than exact ones, so the questions are answered with the
   structured FD* (``noise_metrics``, 2b), consistent at any n for these samplers.
2. The trained UNet ``mnist-unet``: the fraction of samples that an SVC fitted on the 5,000
   training digits (``class_accuracy.fit_digit_classifier``) labels as the requested digit; the
   FD between PCA features of the samples and of all 5,000 digits (``FEATURE_DIMS`` principal
   components of the pixels / 255, fitted on the digits: a linear, deterministic feature map
   whose covariance is well estimated from 100 samples, unlike the 784 pixels; the row "real
   digits" is the FD of n real digits, the floor); and the high-frequency energy ratio (share
   of spectral energy above 0.25 cycles/pixel, samples over data; 1 = like the data).
3. Both: NFE, wall time and the mean Donoho noise estimate σ̂ (gray levels) of the 8-bit images.

NFE convention: one model evaluation per visited timestep for every sampler here (DDPM, DDIM,
Euler, Euler-a, DPM-Solver++(2M) and UniPC are all single-evaluation steps); a guided step is one
NFE of a doubled batch (the conditional and unconditional rows share one forward), so guidance
does not change NFE; ``rows/image`` (= 2 NFE when guided) is the forward rows it costs.

Every setting starts from the same initial latents (image i of class c has seed 1000 c + i + SEED)
and every reference draw is seeded, so a rerun gives the same numbers (wall times aside).
Prints markdown tables and writes JSON, markdown and PNG figures to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.svm import SVC

from protocol.resolution import RequestFieldError
from protocol.schema import ResolvedConfig
from workers.evaluation.class_accuracy import class_states, fit_digit_classifier
from workers.evaluation.exact_error import exact_error
from workers.evaluation.noise_metrics import (
    ClassGaussian,
    frechet_distance,
    frechet_distance_to_gaussian,
    gaussian_statistics,
    high_frequency_share,
    structured_frechet_distance,
    variance_ratios,
)
from workers.evaluation.noise_models import class_gaussians, exact_mixture, load_sweep_model
from workers.evaluation.noise_settings import (
    MODEL_NAMES,
    SIZES,
    ModelKind,
    Setting,
    SweepSize,
    exact_settings,
    trained_settings,
)
from workers.images import to_uint8
from workers.models.loading import LoadedModel
from workers.noise_estimate import noise_estimate
from workers.sampling.engine import SamplingEngine
from workers.sampling.state import rows_of, visited_timesteps
from workers.training.data import load_mnist_digits, to_unit_range

SEED = 20240
FEATURE_DIMS = 20
GRID_PER_CLASS: dict[ModelKind, int] = {"exact": 4, "trained": 2}
DEFAULT_OUT = Path("eval/results/noise")
EXACT_METRICS = ("low_ratio", "high_ratio", "fd", "fd_structured")


@dataclass
class Sampled:
    """The images of one setting, class by class (image order of ``class_states``)."""

    latents: np.ndarray  # [N, D] float64, model space, unclipped
    pixels: np.ndarray  # [N, H, W] uint8, what a client gets
    labels: np.ndarray  # [N] requested class
    nfe: int
    alpha_prod_start: float  # ᾱ at the first visited timestep (the initial latent assumes ≈ 0)
    rows_per_image: int
    seconds: float
    config: ResolvedConfig  # of the first image (the others differ in class and seed only)
    timesteps: list[float]  # visited


@dataclass
class DataReference:
    """What the trained model's samples are compared with: the 5,000 training digits."""

    classifier: SVC
    held_out_accuracy: float
    pca: PCA
    images: np.ndarray  # uint8 [N, 28, 28]
    labels: np.ndarray
    feature_mean: np.ndarray
    feature_covariance: np.ndarray
    high_frequency_share: float

    @classmethod
    def fit(cls) -> DataReference:
        images, labels = load_mnist_digits()
        pixels = to_unit_range(images.reshape(len(images), -1))
        pca = PCA(n_components=FEATURE_DIMS, svd_solver="full").fit(pixels)
        mean, covariance = gaussian_statistics(pca.transform(pixels))
        classifier, held_out = fit_digit_classifier()
        share = high_frequency_share(to_unit_range(images))
        return cls(classifier, held_out, pca, images, labels, mean, covariance, share)


@dataclass
class ModelRun:
    """One model's part of the sweep: the reference row, the setting rows and grid tiles."""

    floor: dict[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)
    grids: dict[str, list[np.ndarray]] = field(default_factory=dict)


def mean_noise_estimate(pixels: np.ndarray) -> float:
    return float(np.mean([noise_estimate(p) for p in pixels]))


def sample_setting(model: LoadedModel, setting: Setting, size: SweepSize, seed: int = SEED) -> Sampled:
    """Runs one setting on ``size.per_class`` images of each class in one batched engine run
    (every image in every forward pass: the budget is the whole set's rows)."""
    states = class_states(model, setting.request(), list(size.classes), size.per_class, seed)
    started = time.perf_counter()
    SamplingEngine(model, max_rows=rows_of(states)).run_to_completion(states)
    seconds = time.perf_counter() - started
    latents = torch.cat([s.latent for s in states]).double().cpu().numpy()
    first = states[0]
    return Sampled(
        latents=latents.reshape(len(states), -1),
        pixels=np.stack([to_uint8(s.latent) for s in states]),
        labels=np.array([s.config.class_label for s in states]),
        nfe=states[0].num_steps,
        alpha_prod_start=float(first.scheduler.alphas_cumprod[round(float(first.scheduler.timesteps[0]))]),
        rows_per_image=states[0].num_steps * states[0].rows,
        seconds=seconds,
        config=first.config,
        timesteps=visited_timesteps(first.scheduler),
    )


def exact_metrics(latents: np.ndarray, labels: np.ndarray, gaussians: dict[int, ClassGaussian]) -> dict:
    """Variance ratios and FD per class, and their means over classes."""
    per_class = {}
    for c, reference in gaussians.items():
        low, high = variance_ratios(latents[labels == c], reference)
        per_class[c] = {
            "low_ratio": low,
            "high_ratio": high,
            "fd": frechet_distance_to_gaussian(latents[labels == c], reference),
            "fd_structured": structured_frechet_distance(latents[labels == c], reference),
        }
    means = {k: float(np.mean([m[k] for m in per_class.values()])) for k in EXACT_METRICS}
    return {**means, "per_class": per_class}


def closed_form_metrics(model: LoadedModel, config: ResolvedConfig, classes: tuple[int, ...]) -> dict:
    """The population FD* and ratios of ``config`` (``exact_error``), where the sampler is linear
    (guidance 1, no clipping) and its noise can be followed; else nothing."""
    try:
        error = exact_error(
            exact_mixture(model), model.scheduler_config, config, classes, model.optimized_schedules
        )
    except ValueError:
        return {}
    return {"fd_exact": error.fd, "low_ratio_exact": error.low_ratio, "high_ratio_exact": error.high_ratio}


def trained_metrics(pixels: np.ndarray, labels: np.ndarray, data: DataReference) -> dict:
    """Class accuracy, FD of PCA features to the data's, high-frequency energy ratio."""
    flat = to_unit_range(pixels.reshape(len(pixels), -1))
    predicted = data.classifier.predict(flat)
    mean, covariance = gaussian_statistics(data.pca.transform(flat))
    return {
        "accuracy": float(np.mean(predicted == labels)),
        "fd_features": frechet_distance(mean, covariance, data.feature_mean, data.feature_covariance),
        "hf_ratio": high_frequency_share(to_unit_range(pixels)) / data.high_frequency_share,
    }


def _spread(values: list[float]) -> dict[str, float]:
    return {"mean": float(np.mean(values)), "sd": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0}


def exact_floor(
    model: LoadedModel, gaussians: dict[int, ClassGaussian], size: SweepSize, seed: int = SEED
) -> tuple[dict[str, Any], list[np.ndarray]]:
    """The metrics of n exact draws per class (``size.floor_repeats`` independent sets), and tiles."""
    mixture = exact_mixture(model)
    results, tiles = [], []
    for repeat in range(size.floor_repeats):
        draws, labels = [], []
        for c in size.classes:
            generator = torch.Generator().manual_seed(seed + 7919 * repeat + c)
            draws.append(mixture.sample_x0(c, size.per_class, generator).float())
            labels += [c] * size.per_class
        x0 = torch.cat(draws)
        pixels = np.stack([to_uint8(x[None]) for x in x0])
        metrics = exact_metrics(x0.double().reshape(len(x0), -1).numpy(), np.array(labels), gaussians)
        results.append({**metrics, "noise_estimate": mean_noise_estimate(pixels)})
        if repeat == 0:
            tiles = _grid_tiles(pixels, np.array(labels), GRID_PER_CLASS["exact"])
    floor = {k: _spread([r[k] for r in results]) for k in (*EXACT_METRICS, "noise_estimate")}
    return {"label": "exact draws", "images": len(labels), **floor}, tiles


def data_floor(data: DataReference, size: SweepSize, seed: int = SEED) -> tuple[dict[str, Any], list]:
    """The trained-model metrics of n real digits per class (independent subsets), and tiles."""
    results, tiles = [], []
    for repeat in range(size.floor_repeats):
        rng = np.random.default_rng(seed + repeat)
        index = np.concatenate(
            [
                rng.choice(np.flatnonzero(data.labels == c), size.per_class, replace=False)
                for c in size.classes
            ]
        )
        pixels, labels = data.images[index], data.labels[index]
        results.append(
            {**trained_metrics(pixels, labels, data), "noise_estimate": mean_noise_estimate(pixels)}
        )
        if repeat == 0:
            tiles = _grid_tiles(pixels, labels, GRID_PER_CLASS["trained"])
    keys = ("accuracy", "fd_features", "hf_ratio", "noise_estimate")
    floor = {k: _spread([r[k] for r in results]) for k in keys}
    return {"label": "real digits", "images": len(index), **floor}, tiles


def _grid_tiles(pixels: np.ndarray, labels: np.ndarray, per_class: int) -> list[np.ndarray]:
    return [p for c in np.unique(labels) for p in pixels[labels == c][:per_class]]


def run_model(
    kind: ModelKind,
    model: LoadedModel,
    settings: list[Setting],
    size: SweepSize,
    data: DataReference | None = None,
    seed: int = SEED,
) -> ModelRun:
    """Samples every setting on one model and measures it; a setting the resolver refuses is
    reported as skipped. ``data`` is needed for the trained model."""
    if kind == "exact":
        gaussians = class_gaussians(model, size.classes)
        floor, tiles = exact_floor(model, gaussians, size, seed)
    else:
        if data is None:
            raise ValueError("the trained model's metrics need a DataReference")
        floor, tiles = data_floor(data, size, seed)
    run = ModelRun(floor=floor, grids={floor["label"]: tiles})
    for setting in settings:
        row: dict[str, Any] = {
            "label": setting.label,
            "family": setting.family,
            "groups": list(setting.groups),
            "request": setting.request().model_dump(exclude_none=True, exclude_defaults=True),
        }
        try:
            sampled = sample_setting(model, setting, size, seed)
        except RequestFieldError as error:
            run.rows.append({**row, "skipped": f"{error.field}: {error.message}"})
            print(f"  {kind:7} {setting.label:28} skipped: {error.message}", flush=True)
            continue
        if kind == "exact":
            metrics = exact_metrics(sampled.latents, sampled.labels, gaussians)
            metrics.update(closed_form_metrics(model, sampled.config, size.classes))
        else:
            metrics = trained_metrics(sampled.pixels, sampled.labels, data)  # type: ignore[arg-type]
        row.update(
            sampler=sampled.config.sampler,
            steps=sampled.config.steps,
            schedule=sampled.config.schedule,
            timesteps=sampled.timesteps,
            nfe=sampled.nfe,
            alpha_prod_start=sampled.alpha_prod_start,
            rows_per_image=sampled.rows_per_image,
            images=len(sampled.labels),
            seconds=round(sampled.seconds, 2),
            noise_estimate=mean_noise_estimate(sampled.pixels),
            **metrics,
        )
        run.rows.append(row)
        if setting.grid:
            run.grids[setting.label] = _grid_tiles(sampled.pixels, sampled.labels, GRID_PER_CLASS[kind])
        headline = (
            f"low {row['low_ratio']:.3f} FD* {row['fd_structured']:.2f} FD {row['fd']:.1f}"
            if kind == "exact"
            else f"acc {row['accuracy']:.2f} FD {row['fd_features']:.2f} HF {row['hf_ratio']:.2f}"
        )
        print(f"  {kind:7} {setting.label:28} {headline}  {sampled.seconds:6.1f} s", flush=True)
    return run


def run_sweep(quick: bool, models: list[ModelKind]) -> tuple[dict[str, Any], dict[str, dict]]:
    """The whole sweep: the JSON report, and the grid tiles per model."""
    started = time.perf_counter()
    report: dict[str, Any] = {"mode": "quick" if quick else "full", "seed": SEED}
    grids: dict[str, dict] = {}
    settings = {"exact": exact_settings(quick), "trained": trained_settings(quick)}
    for kind in models:
        size = SIZES[quick][kind]
        model = load_sweep_model(kind)
        data = DataReference.fit() if kind == "trained" else None
        count = f"{len(settings[kind])} settings, {len(size.classes)} classes x {size.per_class}"
        print(f"{MODEL_NAMES[kind]}: {count}", flush=True)
        run = run_model(kind, model, settings[kind], size, data)
        report[kind] = {
            "model": MODEL_NAMES[kind],
            "classes": list(size.classes),
            "per_class": size.per_class,
            "floor_repeats": size.floor_repeats,
            "floor": run.floor,
            "rows": run.rows,
        }
        if data is not None:
            report[kind]["classifier_held_out_accuracy"] = data.held_out_accuracy
            report[kind]["feature_map"] = f"PCA-{FEATURE_DIMS} of pixels/255 fitted on the 5,000 digits"
        grids[kind] = run.grids
    report["wall_seconds"] = round(time.perf_counter() - started, 1)
    return report, grids


def main(argv: list[str] | None = None) -> None:
    from workers.evaluation.noise_plots import write_figures
    from workers.evaluation.noise_report import add_answers, markdown_report

    parser = argparse.ArgumentParser(
        prog="python -m workers.evaluation.noise_sweep",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="a few settings, small n (about 2 minutes)")
    parser.add_argument("--out", type=Path, help=f"default {DEFAULT_OUT} ({DEFAULT_OUT}/quick with --quick)")
    parser.add_argument("--models", nargs="+", choices=["exact", "trained"], default=["exact", "trained"])
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads (default 1: on 2 shared cores, 2 threads ran 3-7x slower under load)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = args.out or (DEFAULT_OUT / "quick" if args.quick else DEFAULT_OUT)
    report, grids = run_sweep(args.quick, args.models)
    report["command"] = "python -m workers.evaluation.noise_sweep" + (" --quick" if args.quick else "")
    report["torch_threads"] = args.threads
    add_answers(report)
    markdown = markdown_report(report)
    print("\n" + markdown)
    out.mkdir(parents=True, exist_ok=True)
    (out / "noise_sweep.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "noise_sweep.md").write_text(markdown + "\n")
    written = write_figures(report, grids, out)
    print(f"\nwrote {out / 'noise_sweep.json'}, {out / 'noise_sweep.md'}, " + ", ".join(map(str, written)))


if __name__ == "__main__":
    main()
