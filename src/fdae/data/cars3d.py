"""`cars3d`: the Cars3D renders of Reed et al. (2015), a folder of 183 `.mat` files.

Each file holds `im` (128, 128, 3, 24, 4) uint8 = one car model at 24 azimuths x 4
elevations. Order (as disentanglement_lib): factors (elevation 4, azimuth 24, object
183), row-major; the object index is the position of the file in the *sorted* list of
`.mat` names (disentanglement_lib uses the unsorted directory listing, which differs
between file systems). Images are shrunk to 64x64 with PIL's LANCZOS thumbnail, as
disentanglement_lib does. The decoded 17,568 x 64x64x3 uint8 array (216 MB) is kept in
RAM and cached in $FDAE_CACHE_DIR so later runs skip the decoding.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from fdae.data.files import FileDataset, cache_dir, cached_npy, check
from fdae.errors import FdaeError

PUBLISHED = "http://www.scottreed.info/files/nips2015-analogy-data.tar.gz (folder data/cars)"


def shrink(view: np.ndarray) -> np.ndarray:
    """A 128 x 128 x 3 uint8 view -> 64 x 64 x 3 with PIL's LANCZOS thumbnail (as
    disentanglement_lib); `cars3d-synth` shrinks its renders with this same function."""
    from PIL import Image

    pic = Image.fromarray(view)
    pic.thumbnail((64, 64), Image.LANCZOS)
    return np.asarray(pic)


class Cars3DFile(FileDataset):
    """Cars3D from its folder of `.mat` files."""

    name = "cars3d"
    factor_names = ("elevation", "azimuth", "object")
    factor_sizes = (4, 24, 183)
    num_channels = 3
    published = PUBLISHED

    def __init__(self, root: str | os.PathLike | None = None, *, path: str | os.PathLike | None = None,
                 factor_sizes: tuple[int, ...] | None = None) -> None:
        self.path = self._locate(root, path, factor_sizes, ("cars", "cars3d"))
        check(self.path.is_dir(), self.name, self.path, "expected a folder of .mat files")
        self.files = sorted(p for p in self.path.iterdir() if p.suffix == ".mat")
        check(len(self.files) == self.factor_sizes[2], self.name, self.path,
              f"found {len(self.files)} .mat files, expected {self.factor_sizes[2]} (one per car model)",
              "unpack the complete archive into this folder")
        self._images: np.ndarray | None = None

    def _decode_one(self, file: Path) -> np.ndarray:
        from scipy.io import loadmat

        try:
            mat = loadmat(file)
        except Exception as err:  # scipy raises several types for broken files
            raise FdaeError(f"{self.name}: {file}: not a readable .mat file ({err}); re-download it.") from None
        el, az = self.factor_sizes[0], self.factor_sizes[1]
        check("im" in mat, self.name, file, f"expected the variable 'im', found {sorted(k for k in mat if not k.startswith('__'))}")
        im = mat["im"]
        check(im.shape == (128, 128, 3, az, el), self.name, file,
              f"'im' must be (128, 128, 3, {az}, {el}), got {im.shape}")
        check(im.dtype == np.uint8, self.name, file, f"'im' must be uint8, got {im.dtype}")
        views = np.einsum("hwcae->eahwc", im).reshape(-1, 128, 128, 3)  # elevation-major
        out = np.empty((len(views), 64, 64, 3), dtype=np.uint8)
        for i, view in enumerate(views):
            out[i] = shrink(view)
        return out.reshape(el, az, 64, 64, 3)

    def _decode(self) -> np.ndarray:
        from tqdm import tqdm

        stamp = hashlib.sha1("|".join(f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}"
                                      for p in self.files).encode()).hexdigest()[:16]

        def build() -> np.ndarray:
            el, az, n_obj = self.factor_sizes
            out = np.empty((el, az, n_obj, 64, 64, 3), dtype=np.uint8)
            for obj, file in enumerate(tqdm(self.files, desc=f"{self.name}: decoding .mat files once",
                                            unit="file", disable=len(self.files) < 20)):
                out[:, :, obj] = self._decode_one(file)
            return out.reshape(-1, 64, 64, 3)

        return cached_npy(cache_dir() / f"cars3d-{stamp}.npy", build)
