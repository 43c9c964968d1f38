"""A labelled grid of images (``denoise compare``): each cell an image scaled up with nearest
neighbours, so single pixels of noise stay visible, over its caption; an optional title above.

The layout is a value (``GridLayout``) computed before drawing, so callers and tests know where
each cell's image lies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont

PAD = 4  # pixels around images and captions
CAPTION_INK = 0
BACKGROUND = 255
MISSING_GLYPH = "\U0010fffd"  # a private-use code point no font draws: its mask is the "tofu" box


def default_font() -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default()


def has_glyphs(font: ImageFont.FreeTypeFont | ImageFont.ImageFont, text: str) -> bool:
    """Whether ``font`` draws every character of ``text`` (PIL's default font has no Greek)."""
    tofu = font.getmask(MISSING_GLYPH)
    missing = (tofu.size, bytes(tofu))
    for char in set(text) - {" "}:
        mask = font.getmask(char)
        if (mask.size, bytes(mask)) == missing:
            return False
    return True


def noise_label(noise_estimate: float, font: ImageFont.FreeTypeFont | ImageFont.ImageFont) -> str:
    """``σ̂ 0.42`` (the noise estimate, in gray levels), spelt ``noise`` where the font has no σ̂."""
    symbol = "σ\u0302" if has_glyphs(font, "σ\u0302") else "noise"
    return f"{symbol} {noise_estimate:.2f}"


@dataclass(frozen=True)
class GridLayout:
    columns: int
    rows: int
    image_width: int  # the largest scaled image
    image_height: int
    cell_width: int
    cell_height: int
    line_height: int
    title_height: int
    title_width: int

    @property
    def size(self) -> tuple[int, int]:
        width = max(self.columns * self.cell_width, self.title_width)
        return width, self.title_height + self.rows * self.cell_height

    def cell_origin(self, index: int) -> tuple[int, int]:
        row, column = divmod(index, self.columns)
        return column * self.cell_width, self.title_height + row * self.cell_height

    def image_box(self, index: int, width: int, height: int) -> tuple[int, int, int, int]:
        """Where a scaled image of ``width`` × ``height`` lies in cell ``index``: centred, at the top."""
        x, y = self.cell_origin(index)
        left = x + (self.cell_width - width) // 2
        top = y + PAD + (self.image_height - height) // 2
        return left, top, left + width, top + height


def _text_width(font: ImageFont.FreeTypeFont | ImageFont.ImageFont, text: str) -> int:
    left, _top, right, _bottom = font.getbbox(text)
    return int(right - min(left, 0))


def layout_grid(
    sizes: Sequence[tuple[int, int]],
    captions: Sequence[Sequence[str]],
    columns: int,
    scale: int,
    title: str | None = None,
    font: ImageFont.FreeTypeFont | ImageFont.ImageFont | None = None,
) -> GridLayout:
    """The grid for images of ``sizes`` (before scaling), each with its caption lines."""
    font = font or default_font()
    _left, top, _right, bottom = font.getbbox("Ag|")
    line_height = int(bottom - min(top, 0)) + 2
    lines = max((len(caption) for caption in captions), default=0)
    widest_text = max((_text_width(font, line) for caption in captions for line in caption), default=0)
    image_width = max(width for width, _ in sizes) * scale
    image_height = max(height for _, height in sizes) * scale
    return GridLayout(
        columns=columns,
        rows=-(-len(sizes) // columns),
        image_width=image_width,
        image_height=image_height,
        cell_width=max(image_width, widest_text) + 2 * PAD,
        cell_height=PAD + image_height + PAD + lines * line_height + PAD,
        line_height=line_height,
        title_height=line_height + 2 * PAD if title else 0,
        title_width=_text_width(font, title) + 2 * PAD if title else 0,
    )


def draw_grid(
    images: Sequence[Image.Image],
    captions: Sequence[Sequence[str]],
    columns: int,
    scale: int,
    title: str | None = None,
) -> tuple[Image.Image, GridLayout]:
    """The grid image (grey if every image is grey, else RGB) and its layout."""
    font = default_font()
    grid_layout = layout_grid([image.size for image in images], captions, columns, scale, title, font)
    mode = "L" if all(image.mode == "L" for image in images) else "RGB"
    background = BACKGROUND if mode == "L" else (BACKGROUND,) * 3
    ink = CAPTION_INK if mode == "L" else (CAPTION_INK,) * 3
    grid = Image.new(mode, grid_layout.size, background)
    draw = ImageDraw.Draw(grid)
    if title:
        draw.text((PAD, PAD), title, fill=ink, font=font)
    for index, (image, caption) in enumerate(zip(images, captions, strict=True)):
        scaled = image.convert(mode).resize(
            (image.width * scale, image.height * scale), Image.Resampling.NEAREST
        )
        left, top, _right, _bottom = grid_layout.image_box(index, scaled.width, scaled.height)
        grid.paste(scaled, (left, top))
        x, y = grid_layout.cell_origin(index)
        text_top = y + PAD + grid_layout.image_height + PAD
        for line_number, line in enumerate(caption):
            draw.text((x + PAD, text_top + line_number * grid_layout.line_height), line, fill=ink, font=font)
    return grid, grid_layout
