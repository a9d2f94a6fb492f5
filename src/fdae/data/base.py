"""The one interface every ground-truth dataset implements.

A dataset is a function from factor indices to images. Everything else (flat index
arithmetic, disentanglement_lib-compatible sampling, float conversion, random training
batches) is written once here, on top of one primitive: `images_uint8`.
"""

from __future__ import annotations

import abc
import contextlib
from typing import Any

import numpy as np
import torch

from fdae.errors import FdaeError

IMAGE_SIZE = 64


def _as_numpy_factors(factors: Any) -> np.ndarray:
    """Factors as an int64 numpy array (CPU), whatever they came in as."""
    if isinstance(factors, torch.Tensor):
        return factors.detach().to("cpu", torch.int64).numpy()
    return np.asarray(factors, dtype=np.int64)


@contextlib.contextmanager
def single_thread():
    """Run torch CPU ops on one thread: the one-time table builds are many small ops,
    for which thread hand-offs cost more than they gain (badly so on a busy machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def uint8_to_signed(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [-1, 1]; one formula so procedural and file images agree."""
    return images.to(torch.float32) * (2.0 / 255.0) - 1.0


class GroundTruthDataset(abc.ABC):
    """Images indexed by a grid of discrete ground-truth factors.

    Flat index = sum_i f_i * prod(sizes[i+1:]) (row-major, last factor fastest), the order
    of the published files. Subclasses set the attributes below and implement
    `images_uint8`.
    """

    name: str
    factor_names: tuple[str, ...]
    factor_sizes: tuple[int, ...]
    num_channels: int
    image_size: int = IMAGE_SIZE
    procedural: bool = False

    # ----------------------------------------------------------------- indexing
    def __len__(self) -> int:
        return int(np.prod(self.factor_sizes, dtype=np.int64))

    @property
    def num_factors(self) -> int:
        return len(self.factor_sizes)

    @property
    def _strides(self) -> np.ndarray:
        sizes = np.asarray(self.factor_sizes, dtype=np.int64)
        return np.concatenate([np.cumprod(sizes[::-1])[::-1][1:], [1]]).astype(np.int64)

    def factors_of(self, flat_index: Any) -> np.ndarray:
        """Flat index (int or array) -> factor indices, shape (k,) or (n, k)."""
        idx = _as_numpy_factors(flat_index)
        if np.any(idx < 0) or np.any(idx >= len(self)):
            raise FdaeError(f"{self.name}: flat index out of range [0, {len(self)}).")
        out = (idx[..., None] // self._strides) % np.asarray(self.factor_sizes, dtype=np.int64)
        return out

    def index_of(self, factors: Any) -> Any:
        """Factor indices (k,) or (n, k) -> flat index (int or int64 array)."""
        f = self.check_factors(factors)
        flat = f @ self._strides
        return int(flat) if flat.ndim == 0 else flat

    def check_factors(self, factors: Any) -> np.ndarray:
        """Validate factor indices (shape and range) and return them as int64 numpy."""
        f = _as_numpy_factors(factors)
        if f.shape[-1:] != (self.num_factors,):
            raise FdaeError(
                f"{self.name}: factors must have {self.num_factors} columns "
                f"({', '.join(self.factor_names)}), got shape {tuple(f.shape)}."
            )
        if np.any(f < 0) or np.any(f >= np.asarray(self.factor_sizes)):
            raise FdaeError(
                f"{self.name}: factor index out of range; sizes are "
                f"{dict(zip(self.factor_names, self.factor_sizes))}."
            )
        return f

    def factor_tensor(self, factors: Any, device: Any = None, check: bool = True) -> torch.Tensor:
        """(n, k) int64 factors on `device` (default: where they are). Checked, unless
        `check=False` for a tensor the dataset drew itself (`sample_batch`'s fast path)."""
        if isinstance(factors, torch.Tensor) and not check:
            f = factors
        else:
            f = torch.from_numpy(self.check_factors(factors)).reshape(-1, self.num_factors)
        return f.to(torch.device(device) if device is not None else f.device)

    # ----------------------------------------------------------------- sampling
    def sample_factors(self, n: int, random_state: np.random.RandomState) -> np.ndarray:
        """(n, k) int64 factors, drawn column by column as disentanglement_lib does."""
        factors = np.zeros((n, self.num_factors), dtype=np.int64)
        for pos, size in enumerate(self.factor_sizes):
            factors[:, pos] = random_state.randint(size, size=n)
        return factors

    def sample_observations_from_factors(
        self, factors: Any, random_state: np.random.RandomState
    ) -> np.ndarray:
        """(n, 64, 64, C) float32 in [0, 1], as disentanglement_lib's datasets return.

        `random_state` is unused here; datasets with nuisance factors (SmallNORB) draw
        them from it, as disentanglement_lib does.
        """
        del random_state
        u8 = self.images_uint8(self.check_factors(factors), device="cpu")
        return (u8.permute(0, 2, 3, 1).numpy().astype(np.float32)) / np.float32(255.0)

    def sample(self, n: int, random_state: np.random.RandomState) -> tuple[np.ndarray, np.ndarray]:
        """disentanglement_lib's `sample`: factors, then observations."""
        factors = self.sample_factors(n, random_state)
        return factors, self.sample_observations_from_factors(factors, random_state)

    # ----------------------------------------------------------------- images
    @abc.abstractmethod
    def images_uint8(self, factors: Any, device: Any = None) -> torch.Tensor:
        """(n, C, 64, 64) uint8 images of the given (n, k) factor indices on `device`."""

    def images(self, factors: Any, device: Any = None) -> torch.Tensor:
        """(n, C, 64, 64) float32 in [-1, 1] on `device` (numpy or torch int64 factors)."""
        if device is None and isinstance(factors, torch.Tensor):
            device = factors.device
        return uint8_to_signed(self.images_uint8(factors, device=device))

    def random_factors(
        self, batch_size: int, generator: torch.Generator, device: Any = None
    ) -> torch.Tensor:
        """(batch_size, k) int64 uniform factor indices drawn with a torch generator."""
        device = torch.device(device) if device is not None else generator.device
        cols = [
            torch.randint(size, (batch_size,), generator=generator, device=device)
            for size in self.factor_sizes
        ]
        return torch.stack(cols, dim=1)

    def sample_batch(
        self, batch_size: int, generator: torch.Generator, device: Any = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A random training batch (images in [-1, 1], int64 factors) on `device`.

        No DataLoader: procedural datasets render on `device`, file datasets read rows.
        """
        factors = self.random_factors(batch_size, generator, device)
        return self.images(factors, device=factors.device), factors

    def example_images(self, n: int, seed: int = 0, device: Any = None) -> torch.Tensor:
        """n images in [-1, 1] for figures: factors drawn with RandomState(seed).

        Image folders (`fdae.data.folder.ImageFolder`) have the same method, so figure
        code needs no factors."""
        return self.images(self.sample_factors(n, np.random.RandomState(seed)), device=device)

    # ----------------------------------------------------------------- text
    def describe(self) -> str:
        grid = ", ".join(f"{n} {s}" for n, s in zip(self.factor_names, self.factor_sizes))
        kind = "procedural" if self.procedural else "file"
        return f"{self.name} ({kind}; {len(self):,} images; {grid})"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"
