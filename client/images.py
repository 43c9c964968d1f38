"""From a job's images to PNG bytes, PIL images and files.

PIL is imported only by the functions that return PIL images, so the client itself needs only
httpx (and the shared ``protocol``).
"""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import TYPE_CHECKING

from protocol.schema import GeneratedImage, JobView

if TYPE_CHECKING:
    from PIL import Image


def init_image(source: str | Path | bytes | Image.Image) -> str:
    """An ``init_image`` value (base64) from a PNG or JPEG file's path, its bytes, or a PIL image
    (saved as PNG; mode ``L`` for grey models, ``RGB`` for colour ones)."""
    if isinstance(source, str | Path):
        data = Path(source).read_bytes()
    elif isinstance(source, bytes):
        data = source
    else:
        buffer = io.BytesIO()
        source.save(buffer, format="PNG")
        data = buffer.getvalue()
    return base64.b64encode(data).decode("ascii")


def png_bytes(image: GeneratedImage) -> bytes:
    """The PNG file the worker encoded, byte for byte."""
    return base64.b64decode(image.png_base64, validate=True)


def to_pil(image: GeneratedImage) -> Image.Image:
    """The image as a loaded PIL image (mode ``L`` for grey models, ``RGB`` for colour ones)."""
    from PIL import Image

    with Image.open(io.BytesIO(png_bytes(image))) as opened:
        opened.load()
        return opened.copy()


def job_png_bytes(job: JobView) -> list[bytes]:
    """Every image of a finished job as PNG bytes, in index order (empty while unfinished)."""
    return [png_bytes(image) for image in sorted(job.images or [], key=lambda image: image.index)]


def job_pil_images(job: JobView) -> list[Image.Image]:
    return [to_pil(image) for image in sorted(job.images or [], key=lambda image: image.index)]


def output_paths(path: str | Path, count: int) -> list[Path]:
    """``seven.png`` for the first image, then ``seven-1.png``, ``seven-2.png``, ..."""
    path = Path(path)
    return [path if i == 0 else path.with_name(f"{path.stem}-{i}{path.suffix}") for i in range(count)]


def save_images(job: JobView, path: str | Path) -> list[Path]:
    """Writes the job's PNGs (``output_paths``) and returns where."""
    pngs = job_png_bytes(job)
    paths = output_paths(path, len(pngs))
    for target, data in zip(paths, pngs, strict=True):
        target.write_bytes(data)
    return paths
