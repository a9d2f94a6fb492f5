"""`shapes3d`: the real DeepMind 3D Shapes file `3dshapes.h5`, read row by row.

Layout: `images` (480000, 64, 64, 3) uint8 and `labels` (480000, 6) float64, rows in
row-major factor order (orientation fastest). Rows are read with h5py by sorted index,
so the 23 GB float copy other code bases build is never made.
"""

from __future__ import annotations

import os

import numpy as np

from fdae.data.files import FileDataset, check
from fdae.data.shapes3d_synth import Shapes3DSynth
from fdae.errors import FdaeError

FILE = "3dshapes.h5"
PUBLISHED = "https://github.com/google-deepmind/3d-shapes (gs://3d-shapes/3dshapes.h5)"


class Shapes3DFile(FileDataset):
    """3D Shapes from `3dshapes.h5` (or any file in that layout, e.g. an fdae export)."""

    name = "shapes3d"
    factor_names = Shapes3DSynth.factor_names
    factor_sizes = Shapes3DSynth.factor_sizes
    num_channels = 3
    published = PUBLISHED

    def __init__(self, root: str | os.PathLike | None = None, *, path: str | os.PathLike | None = None,
                 factor_sizes: tuple[int, ...] | None = None) -> None:
        import h5py

        self.path = self._locate(root, path, factor_sizes, (FILE, f"shapes3d/{FILE}"))
        try:
            self._h5 = h5py.File(self.path, "r")
        except OSError as err:
            raise FdaeError(f"{self.name}: {self.path}: not a readable HDF5 file ({err}); re-download it.") from None
        keys = set(self._h5.keys())
        check({"images", "labels"} <= keys, self.name, self.path,
              f"expected datasets 'images' and 'labels', found {sorted(keys)}")
        images, labels = self._h5["images"], self._h5["labels"]
        n = len(self)
        check(images.shape[1:] == (64, 64, 3), self.name, self.path,
              f"'images' rows must be 64x64x3, got {images.shape[1:]}")
        check(images.dtype == np.uint8, self.name, self.path, f"'images' must be uint8, got {images.dtype}")
        check(images.shape[0] == n, self.name, self.path,
              f"'images' has {images.shape[0]:,} rows, expected {n:,} (= {' x '.join(map(str, self.factor_sizes))})")
        check(labels.shape == (n, 6), self.name, self.path, f"'labels' must be ({n}, 6), got {labels.shape}")
        self._images = images

    def _read_rows(self, rows: np.ndarray) -> np.ndarray:
        return self._images[rows]  # h5py: increasing unique indices
