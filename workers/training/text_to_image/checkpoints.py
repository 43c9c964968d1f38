"""Atomic checkpoint files and the warm-up + cosine learning-rate schedule both stages share."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import torch


def save_atomically(payload: dict[str, Any], path: Path) -> None:
    """``torch.save`` to a temporary file, then rename: a run killed mid-write keeps its last checkpoint."""
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_if_present(path: Path) -> dict[str, Any] | None:
    return torch.load(path, weights_only=False, map_location="cpu") if path.exists() else None


def learning_rate_at(step: int, peak: float, total: int, warmup: int, min_ratio: float = 0.05) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to ``min_ratio * peak`` at ``total``."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress)))
