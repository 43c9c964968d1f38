"""A PNG grid of samples: one row per class, one column per seed (for model cards and docs).

python -m workers.evaluation.sample_grid --out grid.png [--guidance 2] [--columns 8]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from protocol.resolution import Limits, resolve_request
from protocol.schema import GenerationRequest
from workers.images import to_uint8
from workers.models.loading import LoadedModel, load_model
from workers.models.registry import RegistryEntry, lookup
from workers.sampling.engine import SamplingEngine
from workers.sampling.state import new_states, rows_of

LIMITS = Limits.absolute()


def sample_grid(model: LoadedModel, request: GenerationRequest, columns: int) -> np.ndarray:
    """uint8 [classes * H, columns * W]: row c is class c with seeds seed .. seed + columns - 1."""
    states = []
    for label in range(model.info.num_classes or 1):
        row_request = request.model_copy(update={"class_label": label, "num_images": columns})
        config = resolve_request(row_request, {model.info.name: model.info}, model.info.name, LIMITS)
        states += new_states(f"grid-{label}", config, model)
    SamplingEngine(model, max_rows=rows_of(states)).run_to_completion(states)  # all in every forward
    return tile([to_uint8(s.latent) for s in states], columns)


def tile(tiles: list[np.ndarray], columns: int) -> np.ndarray:
    """Images [H, W] laid out row by row, ``columns`` per row (a partial last row is dropped)."""
    rows = [
        np.concatenate(tiles[r * columns : (r + 1) * columns], axis=1) for r in range(len(tiles) // columns)
    ]
    return np.concatenate(rows, axis=0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m workers.evaluation.sample_grid",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", default="mnist-unet")
    parser.add_argument("--model-dir", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--columns", type=int, default=8)
    parser.add_argument("--scale", type=int, default=2, help="nearest-neighbour upscaling of the PNG")
    parser.add_argument(
        "--request",
        default='{"steps": 50, "sampler": "ddim", "seed": 0}',
        help="JSON GenerationRequest fields applied to every row",
    )
    args = parser.parse_args(argv)
    entry = RegistryEntry(args.model, args.model_dir, "") if args.model_dir else lookup(args.model)
    model = load_model(entry, torch.device("cpu"), torch.float32)
    grid = sample_grid(model, GenerationRequest.model_validate_json(args.request), args.columns)
    image = Image.fromarray(grid)
    image = image.resize((image.width * args.scale, image.height * args.scale), Image.Resampling.NEAREST)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    image.save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
