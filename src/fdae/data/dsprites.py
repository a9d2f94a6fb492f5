"""`dsprites`: the real dSprites npz, `dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz`.

Layout: `imgs` (737280, 64, 64) uint8 in {0, 1} and `latents_classes` (737280, 6) int64
(color 1, shape 3, scale 6, orientation 40, posX 32, posY 32), row-major. The file is
compressed, so the images are streamed once and kept bit-packed in RAM (377 MB instead
of 3 GB); the constant color factor is dropped, as disentanglement_lib does.
"""

from __future__ import annotations

import os

import numpy as np

from fdae.data import npz
from fdae.data.dsprites_synth import DSpritesSynth
from fdae.data.files import FileDataset, check

FILE = "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
PUBLISHED = "https://github.com/google-deepmind/dsprites-dataset"


class DSpritesFile(FileDataset):
    """dSprites from the published npz (or any file in that layout, e.g. an fdae export)."""

    name = "dsprites"
    factor_names = DSpritesSynth.factor_names
    factor_sizes = DSpritesSynth.factor_sizes
    num_channels = 1
    published = PUBLISHED

    def __init__(self, root: str | os.PathLike | None = None, *, path: str | os.PathLike | None = None,
                 factor_sizes: tuple[int, ...] | None = None) -> None:
        self.path = self._locate(root, path, factor_sizes, (FILE, f"dsprites/{FILE}"))
        info = npz.members(self.path, self.name)
        check("imgs" in info, self.name, self.path, f"expected an 'imgs' array, found {sorted(info)}")
        shape, dtype = info["imgs"]
        n = len(self)
        check(shape[1:] == (64, 64), self.name, self.path, f"'imgs' rows must be 64x64, got {shape[1:]}")
        check(dtype == np.uint8, self.name, self.path, f"'imgs' must be uint8, got {dtype}")
        check(shape[0] == n, self.name, self.path,
              f"'imgs' has {shape[0]:,} images, expected {n:,} (= 1 x {' x '.join(map(str, self.factor_sizes))})")
        if "latents_classes" in info:
            check(info["latents_classes"][0] == (n, 6), self.name, self.path,
                  f"'latents_classes' must be ({n}, 6), got {info['latents_classes'][0]}")
        self._packed: np.ndarray | None = None

    def _load(self) -> np.ndarray:
        if self._packed is None:
            chunks = []
            for rows in npz.iter_rows(self.path, "imgs", self.name):
                check(int(rows.max(initial=0)) <= 1, self.name, self.path, "'imgs' must hold 0/1 values")
                chunks.append(np.packbits(rows.reshape(len(rows), -1), axis=1))
            self._packed = np.concatenate(chunks, axis=0)
        return self._packed

    def _read_rows(self, rows: np.ndarray) -> np.ndarray:
        bits = np.unpackbits(self._load()[rows], axis=1, count=64 * 64)
        return (bits * np.uint8(255)).reshape(-1, 64, 64)
