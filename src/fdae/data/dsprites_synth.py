"""`dsprites-synth`: a procedural look-alike of DeepMind's dSprites (binary 64x64).

Same factor grid as the dSprites npz: shape 3 (square, ellipse, heart), scale 6
(0.5..1.0), orientation 40 (linspace(0, 2*pi, 40), so the first and last are equal, as
in the original), posX and posY 32 each (linspace(0, 1, 32); posY grows downwards).

Why it is exact and fast: position is a whole-pixel shift (posX/posY index i puts the
sprite centre at pixel 16 + i), so only (shape, scale, orientation) = 720 sprite stamps
are drawn, once, in float64 on CPU. An image is then an integer gather from its stamp:
identical bits on every device, no anti-aliasing, and the largest sprite at any
rotation stays at least one pixel inside the frame.
"""

from __future__ import annotations

import math
import threading
from typing import Any

import numpy as np
import torch

from fdae.data.base import IMAGE_SIZE, GroundTruthDataset, single_thread, uint8_to_signed

SHAPE_NAMES = ("square", "ellipse", "heart")
SCALES = tuple(np.linspace(0.5, 1.0, 6).tolist())
ORIENTATIONS = tuple(np.linspace(0.0, 2 * math.pi, 40).tolist())
POSITIONS = tuple(np.linspace(0.0, 1.0, 32).tolist())
FIRST_CENTRE = 16  # pixel of the sprite centre at position index 0
UNIT = 10.0  # pixels per shape unit at scale 1.0
CANVAS = 96  # stamp canvas; the sprite centre is at pixel CANVAS // 2
_STAMPS: dict[str, torch.Tensor] = {}
_LOCK = threading.Lock()


def _inside(shape: int, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Shape membership in shape units (u right, v up); every shape fits radius 1.4."""
    if shape == 0:
        return torch.maximum(u.abs(), v.abs()) <= 0.95
    if shape == 1:
        return (u / 1.3) ** 2 + (v / 0.65) ** 2 <= 1.0
    x, y = u / 1.1, v / 1.1 + 0.12  # classic heart curve, centred on its bounding box
    return (x * x + y * y - 1.0) ** 3 - x * x * y**3 <= 0.0


def build_stamps() -> torch.Tensor:
    """(3*6*40, CANVAS*CANVAS) uint8 in {0, 255}, index (shape*6 + scale)*40 + orient."""
    c = CANVAS // 2
    grid = torch.arange(CANVAS, dtype=torch.float64) - c
    dy, dx = torch.meshgrid(grid, grid, indexing="ij")
    out = []
    for shape in range(len(SHAPE_NAMES)):
        for scale in SCALES:
            for theta in ORIENTATIONS:
                ct, st = math.cos(theta), math.sin(theta)
                # rotate the pixel offsets back by theta (counter-clockwise sprite turn)
                u = (ct * dx - st * dy) / (scale * UNIT)
                v = (-st * dx - ct * dy) / (scale * UNIT)
                out.append(_inside(shape, u, v).reshape(-1))
    return torch.stack(out).to(torch.uint8) * 255


def stamps_on(device: torch.device) -> torch.Tensor:
    key = str(device)
    with _LOCK:
        if "cpu" not in _STAMPS:
            with single_thread():
                _STAMPS["cpu"] = build_stamps()
        if key not in _STAMPS:
            _STAMPS[key] = _STAMPS["cpu"].to(device)
        return _STAMPS[key]


class DSpritesSynth(GroundTruthDataset):
    """Procedural dSprites look-alike; NOT the real `dsprites` (see `fdae data list`)."""

    name = "dsprites-synth"
    factor_names = ("shape", "scale", "orientation", "posX", "posY")
    factor_sizes = (3, 6, 40, 32, 32)
    num_channels = 1
    procedural = True

    def factor_values(self) -> dict[str, tuple]:
        """Physical value of each factor index (the npz `latents_values` columns)."""
        return {"shape": (1.0, 2.0, 3.0), "scale": SCALES, "orientation": ORIENTATIONS,
                "posX": POSITIONS, "posY": POSITIONS}

    def images_uint8(self, factors: Any, device: Any = None, check: bool = True) -> torch.Tensor:
        f = self.factor_tensor(factors, device, check)
        device = f.device
        stamps = stamps_on(device).reshape(-1, CANVAS, CANVAS)
        # every 64x64 window of every stamp, as a view (no copy): (720, 33, 33, 64, 64)
        windows = stamps.unfold(1, IMAGE_SIZE, 1).unfold(2, IMAGE_SIZE, 1)
        stamp = (f[:, 0] * 6 + f[:, 1]) * 40 + f[:, 2]
        top = CANVAS // 2 - FIRST_CENTRE - f[:, 4]  # window origin for this sprite centre
        left = CANVAS // 2 - FIRST_CENTRE - f[:, 3]
        return windows[stamp, top, left][:, None]

    def sample_batch(self, batch_size: int, generator: torch.Generator, device: Any = None):
        factors = self.random_factors(batch_size, generator, device)
        return uint8_to_signed(self.images_uint8(factors, factors.device, check=False)), factors
