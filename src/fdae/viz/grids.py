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
