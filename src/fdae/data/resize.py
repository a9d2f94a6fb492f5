"""A ground-truth dataset seen at a lower resolution (32 or 16 px from the 64 px images).

Why: a CPU trains a diffusion autoencoder about four times faster at 32 px than at 64 px,
which is what lets the demo show disentanglement on two cores in minutes. Each output
pixel is the mean of a k x k block of the 64 px image (a box filter, as the procedural
renderers' own supersampling), rounded back to uint8 so every reader stays uint8-first.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from fdae.data.base import GroundTruthDataset, uint8_to_signed
from fdae.errors import FdaeError


class Downsampled(GroundTruthDataset):
    """`base` at `image_size` px; factors, sampling and names are the base dataset's."""

    def __init__(self, base: GroundTruthDataset, image_size: int):
        if image_size >= base.image_size or base.image_size % image_size:
            raise FdaeError(f"{base.name} has {base.image_size} px images; a lower resolution must divide it "
                            f"(e.g. {base.image_size // 2}), got {image_size}")
        self.base = base
        self.image_size = int(image_size)
        self.factor = base.image_size // self.image_size
        self.name = base.name
        self.factor_names = base.factor_names
        self.factor_sizes = base.factor_sizes
        self.num_channels = base.num_channels
        self.procedural = base.procedural

    def __getattr__(self, name: str) -> Any:
        """Anything else a reader offers (factor_values, paths) is the base dataset's."""
        if name == "base":  # not set yet (during unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.base, name)

    def sample_observations_from_factors(self, factors: Any, random_state: np.random.RandomState) -> np.ndarray:
        full = torch.from_numpy(self.base.sample_observations_from_factors(factors, random_state))
        return self._pool(full.permute(0, 3, 1, 2) * 255.0).permute(0, 2, 3, 1).numpy() / np.float32(255.0)

    def _pool(self, images: torch.Tensor) -> torch.Tensor:
        """(n, C, H, W) values in [0, 255] -> box-filtered, rounded, as float32."""
        return torch.round(F.avg_pool2d(images.float(), self.factor))

    def images_uint8(self, factors: Any, device: Any = None) -> torch.Tensor:
        return self._pool(self.base.images_uint8(factors, device=device)).to(torch.uint8)

    def sample_batch(self, batch_size: int, generator: torch.Generator, device: Any = None):
        """The base dataset's batch (its fast path, e.g. rendering on the device), pooled."""
        images, factors = self.base.sample_batch(batch_size, generator, device)
        u8 = torch.round((images + 1.0) * 127.5)
        return uint8_to_signed(self._pool(u8)), factors

    def describe(self) -> str:
        return f"{self.base.describe()} at {self.image_size}x{self.image_size}"
