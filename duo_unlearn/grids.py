"""PNG image grids: where people would rather look than read."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

from duo_unlearn.io import atomic_save_image


def make_grid(
    images: Sequence[Image.Image | np.ndarray],
    ncols: int,
    row_labels: Sequence[str] | None = None,
    scale: int = 2,
    pad: int = 2,
    label_width: int = 260,
) -> Image.Image:
    """Tile images row-major, upscaled ``scale`` times (nearest), with optional row labels."""
    tiles = [img if isinstance(img, Image.Image) else Image.fromarray(np.asarray(img)) for img in images]
    if not tiles:
        raise ValueError("make_grid needs at least one image")
    w, h = tiles[0].size
    w, h = w * scale, h * scale
    nrows = (len(tiles) + ncols - 1) // ncols
    left = label_width if row_labels else 0
    grid = Image.new("RGB", (left + ncols * (w + pad) + pad, nrows * (h + pad) + pad), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, ncols)
        grid.paste(tile.convert("RGB").resize((w, h), Image.Resampling.NEAREST),
                   (left + pad + c * (w + pad), pad + r * (h + pad)))
    for r, label in enumerate(row_labels or []):
        draw.text((4, pad + r * (h + pad) + h // 2 - 6), label[:42], fill=(0, 0, 0))
    return grid


def save_grid(path: str | Path, images, ncols: int, row_labels=None, **kwargs) -> Path:
    """Write a grid PNG atomically and return its path."""
    return atomic_save_image(make_grid(images, ncols, row_labels, **kwargs), path)
