"""Turning image batches into one picture: uint8 conversion, tiling, colouring, saving."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

# One colour per concept (tab10-like), so masks read the same in every figure.
PALETTE = np.array([
    [31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40], [148, 103, 189],
    [140, 86, 75], [227, 119, 194], [127, 127, 127], [188, 189, 34], [23, 190, 207],
], dtype=np.float32)


def to_uint8(images: Tensor) -> np.ndarray:
    """(B, C, H, W) in [-1, 1] -> (B, H, W, 3) uint8 (grey images become RGB)."""
    x = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    return x.permute(0, 2, 3, 1).numpy()


def tile(rows: list[list[np.ndarray]], pad: int = 2, fill: int = 255) -> np.ndarray:
    """A grid of equally sized HWC uint8 cells (None leaves a blank cell)."""
    h, w = next(c for r in rows for c in r if c is not None).shape[:2]
    ncols = max(len(r) for r in rows)
    out = np.full((len(rows) * (h + pad) + pad, ncols * (w + pad) + pad, 3), fill, np.uint8)
    for i, row in enumerate(rows):
        for j, cell in enumerate(row):
            if cell is not None:
                y, x = pad + i * (h + pad), pad + j * (w + pad)
                out[y:y + h, x:x + w] = cell
    return out


def pair_grid(inputs: Tensor, outputs: Tensor, pad: int = 2) -> np.ndarray:
    """(input | output) pairs laid out in a roughly square grid, pairs side by side."""
    a, b = to_uint8(inputs), to_uint8(outputs)
    cols = max(1, math.ceil(math.sqrt(len(a) / 2)))
    rows = []
    for start in range(0, len(a), cols):
        rows.append([cell for i in range(start, min(start + cols, len(a))) for cell in (a[i], b[i])])
    return tile(rows, pad)


def colour_masks(masks: Tensor) -> np.ndarray:
    """(B, N, H, W) soft masks -> (B, H, W, 3): each pixel the mask-weighted concept colour."""
    m = masks.detach().float().cpu().numpy()
    pal = PALETTE[np.arange(m.shape[1]) % len(PALETTE)]
    return np.einsum("bnhw,nc->bhwc", m, pal).clip(0, 255).astype(np.uint8)


def grey(mask: Tensor) -> np.ndarray:
    """(B, H, W) in [0, 1] -> (B, H, W, 3) uint8."""
    g = (mask.detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    return np.repeat(g[..., None], 3, axis=-1)


def save_png(image: np.ndarray, path: str | Path, scale: int = 1) -> Path:
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(image)
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    img.save(path)
    return path


def labelled(grid: np.ndarray, cell: int, title: list[str], col_labels: list[str] | None = None,
             row_labels: list[str] | None = None, scale: int = 2, pad: int = 2) -> np.ndarray:
    """`grid` (a `tile` of `cell`-px cells) enlarged `scale` times with what a reader needs:
    title lines on top, a label over each column and left of each row (None: no label).

    Why: a swap grid without words is a mosaic; which axis carries which code must be
    on the picture itself, not only in the docs.
    """
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=14)
    line_h = 18
    img = Image.fromarray(grid)
    img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    step = (cell + pad) * scale
    draw_probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    left = 0
    if row_labels:
        left = 8 + max(int(draw_probe.textlength(t or "", font=font)) for t in row_labels)
    top = line_h * len(title) + (line_h + 4 if col_labels else 0) + 6
    width = max([img.width + left, *[8 + int(draw_probe.textlength(t, font=font)) for t in title]])
    out = Image.new("RGB", (width, img.height + top), (255, 255, 255))
    out.paste(img, (left, top))
    draw = ImageDraw.Draw(out)
    for i, line in enumerate(title):
        draw.text((4, 3 + i * line_h), line, fill=(0, 0, 0), font=font)
    for j, text in enumerate(col_labels or []):
        if text:
            x = left + pad * scale + j * step + (cell * scale - draw.textlength(text, font=font)) / 2
            draw.text((max(left, x), top - line_h - 2), text, fill=(0, 0, 0), font=font)
    for i, text in enumerate(row_labels or []):
        if text:
            y = top + pad * scale + i * step + (cell * scale - line_h) / 2
            draw.text((4, y), text, fill=(0, 0, 0), font=font)
    return np.asarray(out)
