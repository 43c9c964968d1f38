"""The service's denoising (``strength: "auto"``) against the classical denoisers, on digits the
evaluated model never saw.

    python -m workers.evaluation.denoise_eval [--quick] [--n 100] [--out eval/results/denoise]

1. Data: the held-out digits (``workers.training.data.holdout_indices``: 50 per class that
   ``mnist-unet-heldout`` was trained without), the first ``n // 10`` of each class. Each gets
   Gaussian noise of σ = 10, 25, 50 gray levels (numpy seed 1000 + σ), rounded and clipped to
   0..255: an 8-bit image, as a client would send it in a PNG. Every method gets these same
   8-bit inputs.
2. The service, in-process through the serving path: ``resolve_request`` with ``strength: "auto"``,
   ``new_states`` and the ``SamplingEngine`` (every image of a setting in each forward pass), and
   the delivered 8-bit image (``workers.results.delivered_pixels``: the never-noisier guard
   included). Unconditional (no class label: the digit is unknown to a denoiser), seed 0; the
   stochastic setting (DDPM) is run with ``SEEDS`` seeds and its scores averaged over them.
3. The classical denoisers (``classical_denoisers``), given the true σ; their float output in
   [0, 1] is scored as it is (not rounded to 8 bits).
4. Scores: PSNR and SSIM (scikit-image, data range 1) against the clean digit, averaged over the
   images; σ̂ (the auto start's estimate) and σ_t* (the noise level of the timestep it chose,
   127.5 √((1 − ᾱ_t*)/ᾱ_t*)) against the true σ; the share of images whose output scores noisier
   than its input by the responses' noise estimate before the guard (it then returns the input);
   wall time per image (the service: one batched run / n, on this machine's threads).

Writes ``results.json``, ``results.md`` and one grid per σ (``grid_sigma{σ}.png``: clean, noisy,
the service's best setting, each classical method) to ``--out``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from protocol.init_images import InitImageHeader
from protocol.resolution import Limits, resolve_request
from protocol.schema import GenerationRequest, SamplerName
from workers.evaluation.classical_denoisers import TUNING_DIGITS, classical_denoisers, tune_tv_weight
from workers.evaluation.denoise_grid import save_grid
from workers.images import to_uint8
from workers.init_images import InitImage
from workers.models.loaded_model import LoadedModel
from workers.models.loading import load_model
from workers.models.registry import lookup
from workers.noise_estimate import noise_estimate
from workers.results import delivered_pixels
from workers.sampling.engine import SamplingEngine
from workers.sampling.img2img import GRAY_HALF_RANGE, training_sigmas
from workers.sampling.state import new_states, rows_of
from workers.training.data import holdout_indices, load_mnist_digits, split_digits

SIGMAS = (10, 25, 50)
SEEDS = (0, 1, 2)
DEFAULT_MODEL = "mnist-unet-heldout"
DEFAULT_OUT = Path("eval/results/denoise")
UNCLIPPED_BM3D = "(reference) BM3D on unclipped float noise"


@dataclass(frozen=True)
class Setting:
    sampler: SamplerName
    steps: int
    schedule: str = "uniform"
    seeds: tuple[int, ...] = (0,)

    @property
    def name(self) -> str:
        seeds = f", {len(self.seeds)} seeds" if len(self.seeds) > 1 else ""
        schedule = f" {self.schedule}" if self.schedule != "uniform" else ""
        return f"service {self.sampler} {self.steps} step{'s' if self.steps > 1 else ''}{schedule}{seeds}"


FULL_SETTINGS = (
    Setting("ddim", 1),
    Setting("ddim", 2),
    Setting("ddim", 4),
    Setting("ddim", 8),
    Setting("ddim", 4, "karras"),
    Setting("unipc", 4),
    Setting("unipc", 8),
    Setting("dpmpp_2m", 4),
    Setting("euler", 4),
    Setting("ddpm", 8, seeds=SEEDS),
)
QUICK_SETTINGS = (Setting("ddim", 1), Setting("unipc", 4))


def add_noise(clean: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    """uint8 images + N(0, σ²), rounded and clipped to 0..255 (what a PNG can carry)."""
    rng = np.random.default_rng(seed)
    noisy = clean.astype(np.float64) + sigma * rng.standard_normal(clean.shape)
    return np.clip(np.round(noisy), 0, 255).astype(np.uint8)


def scores(clean: np.ndarray, outputs: list[np.ndarray]) -> tuple[float, float]:
    """Mean PSNR and SSIM of ``outputs`` (in [0, 1]) against ``clean`` (uint8)."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    reference = clean.astype(np.float64) / 255.0
    psnr = [peak_signal_noise_ratio(r, o, data_range=1.0) for r, o in zip(reference, outputs, strict=True)]
    ssim = [structural_similarity(r, o, data_range=1.0) for r, o in zip(reference, outputs, strict=True)]
    return float(np.mean(psnr)), float(np.mean(ssim))


def run_service(
    model: LoadedModel, setting: Setting, noisy: np.ndarray, seed: int
) -> tuple[list[np.ndarray], list[Any], float]:
    """The delivered images of one setting over every noisy digit, the states, and the wall time."""
    info = model.info
    states = []
    for i, pixels in enumerate(noisy):
        header = InitImageHeader(
            "PNG", 28, 28, "L", hashlib.sha256(pixels.tobytes()).hexdigest(), pixels.size
        )
        request = GenerationRequest(
            model=info.name,
            init_image="(in-process)",
            strength="auto",
            sampler=setting.sampler,
            steps=setting.steps,
            schedule=setting.schedule,  # type: ignore[arg-type]
            seed=seed,
        )
        config = resolve_request(request, {info.name: info}, info.name, Limits.absolute(), header)
        states += new_states(f"denoise-{i}", config, model, InitImage(pixels=pixels))
    started = time.perf_counter()
    SamplingEngine(model, max_rows=max(1, rows_of(states))).run_to_completion(states)
    wall = time.perf_counter() - started
    return [delivered_pixels(state)[0] for state in states], states, wall


def evaluate(
    model: LoadedModel, n: int, settings: tuple[Setting, ...], out: Path, reference: bool = True
) -> dict[str, Any]:
    """The report (see the module doc); ``reference``: add BM3D on unclipped noise."""
    images, labels = load_mnist_digits()
    (train_images, _), _ = split_digits(images, labels)
    held = holdout_indices(labels)
    chosen = np.concatenate([held[labels[held] == digit][: max(1, n // 10)] for digit in range(10)])
    clean = images[chosen]
    sigmas_t = training_sigmas(model.scheduler_config)
    report: dict[str, Any] = {"model": model.info.name, "n": len(clean), "threads": torch.get_num_threads()}
    rows: dict[str, dict[int, dict[str, float]]] = {}
    noise_rows: dict[int, dict[str, float]] = {}
    for sigma in SIGMAS:
        noisy = add_noise(clean, sigma, 1000 + sigma)
        noisy01 = [x.astype(np.float64) / 255.0 for x in noisy]
        rows.setdefault("noisy input", {})[sigma] = dict(
            zip(("psnr", "ssim"), scores(clean, noisy01), strict=True)
        )
        tuning_clean = train_images[:TUNING_DIGITS]
        tuning_noisy = add_noise(tuning_clean, sigma, 2000 + sigma)
        tv_weight = tune_tv_weight(
            [c / 255.0 for c in tuning_clean.astype(np.float64)], [t / 255.0 for t in tuning_noisy]
        )
        grid_columns: dict[str, list[np.ndarray]] = {"clean": list(clean / 255.0), "noisy": noisy01}
        best_service: tuple[float, str, list[np.ndarray]] = (-np.inf, "", [])
        for setting in settings:
            runs = []
            for seed in setting.seeds:
                delivered, states, wall = run_service(model, setting, noisy, seed)
                outputs = [p.astype(np.float64) / 255.0 for p in delivered]
                runs.append((*scores(clean, outputs), wall / len(clean), outputs, states))
            psnr, ssim = float(np.mean([r[0] for r in runs])), float(np.mean([r[1] for r in runs]))
            states = runs[0][4]
            noisier = [
                noise_estimate(to_uint8(s.image)) > noise_estimate(x)
                for s, x in zip(states, noisy, strict=True)
            ]
            rows.setdefault(setting.name, {})[sigma] = {
                "psnr": psnr,
                "psnr_sd_over_seeds": float(np.std([r[0] for r in runs])),
                "ssim": ssim,
                "seconds_per_image": float(np.mean([r[2] for r in runs])),
                "noisier_than_input_before_guard": float(np.mean(noisier)),
            }
            if psnr > best_service[0]:
                best_service = (psnr, setting.name, runs[0][3])
            print(f"σ={sigma:>2} {setting.name:<34} PSNR {psnr:6.2f} SSIM {ssim:.4f}", flush=True)
        sigma_hat = np.array([s.init.noise_sigma for s in states])
        sigma_start = np.array([GRAY_HALF_RANGE * sigmas_t[s.start.start_timestep] for s in states])
        noise_rows[sigma] = {
            "sigma_hat_mean": float(sigma_hat.mean()),
            "sigma_hat_sd": float(sigma_hat.std()),
            "sigma_t_star_mean": float(sigma_start.mean()),
            "t_star_mean": float(np.mean([s.start.start_timestep for s in states])),
            "within_10_percent": float(np.mean(np.abs(sigma_start / sigma - 1) <= 0.1)),
            "mean_abs_relative_error": float(np.mean(np.abs(sigma_start / sigma - 1))),
            "wavelet_estimate_mean": float(np.mean([noise_estimate(x) for x in noisy])),
        }
        grid_columns[best_service[1].removeprefix("service ")] = best_service[2]
        for name, denoise in classical_denoisers(tv_weight).items():
            started = time.perf_counter()
            outputs = [denoise(x, sigma / 255.0) for x in noisy01]
            wall = time.perf_counter() - started
            psnr, ssim = scores(clean, outputs)
            key = name.split(" (w=")[0]
            rows.setdefault(key, {})[sigma] = {
                "psnr": psnr,
                "ssim": ssim,
                "seconds_per_image": wall / len(clean),
            }
            if key == "total variation":
                rows[key][sigma]["tv_weight"] = tv_weight
            grid_columns[name.split(" (")[0]] = outputs
            print(f"σ={sigma:>2} {name:<34} PSNR {psnr:6.2f} SSIM {ssim:.4f}", flush=True)
        if not reference:
            save_grid(one_per_class(grid_columns), out / f"grid_sigma{sigma}.png")
            continue
        # a reference the service cannot be sent: BM3D on the same noise without clipping or rounding,
        # the zero-mean Gaussian noise it assumes (a PNG cannot carry it)
        unclipped = clean.astype(np.float64) / 255.0 + sigma / 255.0 * np.random.default_rng(
            1000 + sigma
        ).standard_normal(clean.shape)
        started = time.perf_counter()
        outputs = [classical_denoisers(tv_weight)["BM3D"](x, sigma / 255.0) for x in unclipped]
        psnr, ssim = scores(clean, outputs)
        rows.setdefault(UNCLIPPED_BM3D, {})[sigma] = {
            "psnr": psnr,
            "ssim": ssim,
            "seconds_per_image": (time.perf_counter() - started) / len(clean),
        }
        print(f"σ={sigma:>2} {UNCLIPPED_BM3D:<34} PSNR {psnr:6.2f} SSIM {ssim:.4f}", flush=True)
        save_grid(one_per_class(grid_columns), out / f"grid_sigma{sigma}.png")
    report.update(methods=rows, noise_level=noise_rows, settings=[asdict(s) for s in settings])
    return report


def one_per_class(columns: dict[str, list[np.ndarray]]) -> dict[str, list[np.ndarray]]:
    """The first digit of each class (the digits are in class order, n // 10 of each)."""
    per_class = max(1, len(next(iter(columns.values()))) // 10)
    return {name: images[::per_class][:10] for name, images in columns.items()}


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"Model `{report['model']}`, {report['n']} held-out digits, {report['threads']} torch thread(s).",
        "",
        "| method | " + " | ".join(f"σ={s} PSNR / SSIM" for s in SIGMAS) + " | s/image (σ=25) |",
        "|---|" + "---|" * (len(SIGMAS) + 1),
    ]
    for name, by_sigma in report["methods"].items():
        cells = [f"{by_sigma[s]['psnr']:.2f} / {by_sigma[s]['ssim']:.3f}" for s in SIGMAS]
        seconds = by_sigma[25].get("seconds_per_image")
        lines.append(
            f"| {name} | " + " | ".join(cells) + f" | {'' if seconds is None else f'{seconds:.4f}'} |"
        )
    lines += [
        "",
        "| σ | σ̂ mean ± sd | σ_t* mean | t* mean | σ_t* within 10% | mean abs rel. error | wavelet σ̂ |",
        "|---|---|---|---|---|---|---|",
    ]
    for sigma, row in report["noise_level"].items():
        lines.append(
            f"| {sigma} | {row['sigma_hat_mean']:.2f} ± {row['sigma_hat_sd']:.2f} "
            f"| {row['sigma_t_star_mean']:.2f} | {row['t_star_mean']:.1f} "
            f"| {100 * row['within_10_percent']:.0f}% "
            f"| {100 * row['mean_abs_relative_error']:.1f}% | {row['wavelet_estimate_mean']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m workers.evaluation.denoise_eval",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--quick", action="store_true", help="2 service settings, 10 digits, no unclipped reference (< 1 min)"
    )
    parser.add_argument("--n", type=int, help="held-out digits (a multiple of 10; default 100, quick 10)")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--out", type=Path, help=f"default {DEFAULT_OUT} ({DEFAULT_OUT}/quick with --quick)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = args.out or (DEFAULT_OUT / "quick" if args.quick else DEFAULT_OUT)
    out.mkdir(parents=True, exist_ok=True)
    n = args.n or (10 if args.quick else 100)
    model = load_model(lookup(args.model), torch.device("cpu"), torch.float32)
    settings = QUICK_SETTINGS if args.quick else FULL_SETTINGS
    report = evaluate(model, n, settings, out, reference=not args.quick)
    report["command"] = "python -m workers.evaluation.denoise_eval" + (" --quick" if args.quick else "")
    (out / "results.json").write_text(json.dumps(report, indent=1) + "\n")
    table = markdown(report)
    (out / "results.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
