"""Traversal grids: one row per factor, sweeping that factor with the others fixed.

The first column names the factor; the title names the dataset (procedural stand-ins
are marked as such), so a saved picture always says where it came from.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from fdae.data.base import GroundTruthDataset

LABEL_W, TITLE_H, GAP = 120, 18, 2


def traversal_factors(ds: GroundTruthDataset, columns: int, seed: int) -> list[np.ndarray]:
    """Per factor, (m, k) factors: the base point with that factor swept over m values."""
    base = ds.sample_factors(1, np.random.RandomState(seed))[0]
    rows = []
    for k, size in enumerate(ds.factor_sizes):
        m = min(size, columns)
        f = np.tile(base, (m, 1))
        f[:, k] = np.unique(np.linspace(0, size - 1, m).round().astype(np.int64))
        rows.append(f)
    return rows


def folder_preview_image(ds, columns: int = 10, seed: int = 0, rows: int = 4) -> Image.Image:
    """An image folder (no factors): `rows` x `columns` of its images drawn with `seed`."""
    size = ds.image_size
    picks = np.random.RandomState(seed).choice(len(ds), size=rows * columns, replace=rows * columns > len(ds))
    imgs = ds.images_uint8(picks).permute(0, 2, 3, 1).numpy()
    canvas = Image.new("RGB", (columns * (size + GAP), TITLE_H + rows * (size + GAP)), (255, 255, 255))
    ImageDraw.Draw(canvas).text((4, 3), f"{ds.name} ({len(ds):,} images, {size}px)", fill=(0, 0, 0))
    for k, img in enumerate(imgs):
        canvas.paste(Image.fromarray(img), ((k % columns) * (size + GAP), TITLE_H + (k // columns) * (size + GAP)))
    return canvas


def preview_image(ds: GroundTruthDataset, columns: int = 10, seed: int = 0) -> Image.Image:
    """The traversal grid of `ds` as an RGB PIL image (a grid of examples for image folders)."""
    if getattr(ds, "factor_sizes", None) is None:
        return folder_preview_image(ds, columns, seed)
    rows = traversal_factors(ds, columns, seed)
    width = LABEL_W + max(len(r) for r in rows) * (64 + GAP)
    height = TITLE_H + len(rows) * (64 + GAP)
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    kind = "procedural stand-in" if ds.procedural else "real data"
    draw.text((4, 3), f"{ds.name} ({kind}) - each row sweeps one factor", fill=(0, 0, 0))
    for r, (name, f) in enumerate(zip(ds.factor_names, rows)):
        y = TITLE_H + r * (64 + GAP)
        draw.text((4, y + 26), f"{name} ({ds.factor_sizes[r]})", fill=(0, 0, 0))
        u8 = ds.images_uint8(f).permute(0, 2, 3, 1).numpy()
        for c, img in enumerate(u8):
            tile = Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img).convert("RGB")
            canvas.paste(tile, (LABEL_W + c * (64 + GAP), y))
    return canvas
