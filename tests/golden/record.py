"""Computes the PNG hashes of the golden requests in-process, through the serving code path
(request resolution, the sampling engine, the PNG encoder), with one torch thread as the test
worker runs.

    python -m tests.golden.record          # rewrites png_sha256.json (on purpose only)
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import torch

from protocol.resolution import Limits, resolve_request
from protocol.schema import GenerationRequest
from tests.golden.requests import GOLDEN_REQUESTS, HASHES_FILE, request_key
from workers.images import encode_png, to_uint8
from workers.models.loading import LoadedModel, load_model
from workers.models.registry import lookup
from workers.sampling.engine import generate

LIMITS = Limits.absolute()


def load_models() -> dict[str, LoadedModel]:
    torch.set_num_threads(1)
    names = sorted({str(r["model"]) for r in GOLDEN_REQUESTS})
    return {name: load_model(lookup(name), torch.device("cpu"), torch.float32) for name in names}


def png_hashes(request: dict[str, Any], models: dict[str, LoadedModel]) -> list[str]:
    """sha256 of each image's PNG bytes, in image order."""
    infos = {name: model.info for name, model in models.items()}
    config = resolve_request(GenerationRequest.model_validate(request), infos, "mnist-unet", LIMITS)
    states = generate(models[config.model], config)
    return [hashlib.sha256(encode_png(to_uint8(state.image))).hexdigest() for state in states]


def main() -> None:
    models = load_models()
    hashes = {request_key(r): png_hashes(r, models) for r in GOLDEN_REQUESTS}
    HASHES_FILE.write_text(json.dumps(hashes, indent=1, sort_keys=True) + "\n")
    print(f"wrote {len(hashes)} requests to {HASHES_FILE}")


if __name__ == "__main__":
    main()
