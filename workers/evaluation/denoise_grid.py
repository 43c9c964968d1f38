"""An example grid of the denoising evaluation: one column per method (clean, noisy, the service,
each classical denoiser), one row per digit, a label over each column (Pillow only)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SCALE = 3
GAP = 4
LABEL_HEIGHT = 28


def save_grid(columns: dict[str, list[np.ndarray]], path: Path, rows_shown: int = 10) -> None:
    """``columns``: name -> gray images in [0, 1] (the same digits in the same order)."""
    names = list(columns)
    side = columns[names[0]][0].shape[0] * SCALE
    cell = side + GAP
    width = max(cell * len(names) + GAP, 1)
    rows = min(rows_shown, len(columns[names[0]]))
    canvas = Image.new("L", (width, LABEL_HEIGHT + rows * cell + GAP), color=255)
    draw = ImageDraw.Draw(canvas)
    for col, name in enumerate(names):
        x = GAP + col * cell
        words = name.split(" ")
        draw.text((x, 2), " ".join(words[:2]), fill=0)
        draw.text((x, 14), " ".join(words[2:]), fill=0)
        for row in range(rows):
            pixels = np.clip(np.round(columns[name][row] * 255.0), 0, 255).astype(np.uint8)
            tile = Image.fromarray(pixels).resize((side, side), Image.Resampling.NEAREST)
            canvas.paste(tile, (x, LABEL_HEIGHT + row * cell))
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
