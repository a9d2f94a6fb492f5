"""`mpi3d-*`: the MPI3D npz files (toy, realistic, real, and real-complex).

Layout: `images` (N, 64, 64, 3) uint8, row-major over the factors. The standard files
have N = 1,036,800 = 6x6x2x3x3x40x40; the real-complex file has 460,800 =
4x4x2x3x3x40x40. The grid is chosen by the image count and checked against the name.
Uncompressed members are memory-mapped in place; a compressed one is decompressed once
into the cache folder ($FDAE_CACHE_DIR) and memory-mapped from there.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from fdae.data import npz
from fdae.data.files import FileDataset, cache_dir, check, find_file, resolve_root

PUBLISHED = "https://github.com/rr-learning/disentanglement_dataset"
FACTORS = ("object_color", "object_shape", "object_size", "camera_height",
           "background_color", "horizontal_axis", "vertical_axis")
STANDARD = (6, 6, 2, 3, 3, 40, 40)
COMPLEX = (4, 4, 2, 3, 3, 40, 40)
VARIANTS = {  # name -> (file, sizes)
    "mpi3d-toy": ("mpi3d_toy.npz", STANDARD),
    "mpi3d-realistic": ("mpi3d_realistic.npz", STANDARD),
    "mpi3d-real": ("mpi3d_real.npz", STANDARD),
    "mpi3d-complex": ("real3d_complicated_shapes_ordered.npz", COMPLEX),
}
IN_RAM_LIMIT = 1 << 30


class MPI3DFile(FileDataset):
    """One MPI3D variant; `variant` is a key of VARIANTS."""

    factor_names = FACTORS
    num_channels = 3
    published = PUBLISHED

    def __init__(self, variant: str, root: str | os.PathLike | None = None, *,
                 path: str | os.PathLike | None = None, factor_sizes: tuple[int, ...] | None = None) -> None:
        self.name = variant
        file, sizes = VARIANTS[variant]
        self.path = Path(path) if path else find_file(variant, resolve_root(root), (file, f"mpi3d/{file}"), PUBLISHED)
        info = npz.members(self.path, variant)
        check("images" in info, variant, self.path, f"expected an 'images' array, found {sorted(info)}")
        shape, dtype = info["images"]
        check(len(shape) == 4 and shape[1:] == (64, 64, 3), variant, self.path,
              f"'images' rows must be 64x64x3, got {shape[1:]}")
        check(dtype == np.uint8, variant, self.path, f"'images' must be uint8, got {dtype}")
        if factor_sizes is not None:  # small test files only; see FileDataset
            self.factor_sizes = tuple(int(s) for s in factor_sizes)
        else:
            by_count = {int(np.prod(STANDARD)): STANDARD, int(np.prod(COMPLEX)): COMPLEX}
            found = by_count.get(shape[0])
            check(found is not None, variant, self.path,
                  f"'images' has {shape[0]:,} images; MPI3D files have {int(np.prod(STANDARD)):,} "
                  f"(toy/realistic/real) or {int(np.prod(COMPLEX)):,} (real-complex)")
            other = "mpi3d-complex" if found == COMPLEX else "mpi3d-real (or -toy / -realistic)"
            check(found == sizes, variant, self.path,
                  f"its {shape[0]:,} images are the grid {found}, not the {variant} grid {sizes}",
                  f"use the dataset name {other} for this file")
            self.factor_sizes = found
        check(shape[0] == len(self), variant, self.path,
              f"'images' has {shape[0]:,} images, expected {len(self):,}")
        self._images: np.ndarray | None = None

    def _decode(self) -> np.ndarray:
        """Memory-mapped in place (uncompressed npz) or decompressed once into the cache."""
        cache = cache_dir() / f"{self.name}-{self.path.stem}.npy"
        return npz.load_or_cache(self.path, "images", self.name, cache, IN_RAM_LIMIT)

    def _read_rows(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(super()._read_rows(rows))
