"""`smallnorb`: the small NORB binary matrix files (LeCun et al. 2004).

Six files (training and testing x dat/cat/info, plain or .gz). Each starts with an
int32 magic (0x1E3D4C55 uint8 matrix, 0x1E3D4C54 int32 matrix), int32 ndim, then
max(ndim, 3) int32 dims, then the data, little-endian. `dat` is (24300, 2, 96, 96),
`cat` (24300,), `info` (24300, 4) = instance, elevation, azimuth (0, 2, ..., 34),
lighting. As disentanglement_lib: the left camera image, resized to 64x64 (LANCZOS);
factors category 5, elevation 9, azimuth 18, lighting 6; the instance (10) is a
nuisance drawn at random by `sample_observations_from_factors` and `sample_batch`, and
chosen as flat_index % 10 by `images` so that it stays deterministic.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fdae.data.base import uint8_to_signed
from fdae.data.files import FileDataset, cache_dir, cached_npy, check, find_file, read_sorted, resolve_root
from fdae.errors import FdaeError

PUBLISHED = "https://cs.nyu.edu/~ylclab/data/norb-v1.0-small/"
MAGIC_UINT8, MAGIC_INT32 = 0x1E3D4C55, 0x1E3D4C54
SPLITS = ("smallnorb-5x46789x9x18x6x2x96x96-training", "smallnorb-5x01235x9x18x6x2x96x96-testing")


def read_matrix(path: Path, name: str) -> np.ndarray:
    """One NORB binary matrix file (plain or gzip) as a numpy array."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fp:
            head = fp.read(8)
            check(len(head) == 8, name, path, "file too short for a NORB header")
            magic, ndim = struct.unpack("<ii", head)
            dtypes = {MAGIC_UINT8: np.uint8, MAGIC_INT32: np.int32}
            check(magic in dtypes, name, path, f"unknown magic number {magic:#x} (expected {MAGIC_UINT8:#x} or {MAGIC_INT32:#x})")
            check(0 < ndim < 8, name, path, f"bad number of dimensions {ndim}")
            dims = struct.unpack(f"<{max(ndim, 3)}i", fp.read(4 * max(ndim, 3)))[:ndim]
            dtype = np.dtype(dtypes[magic]).newbyteorder("<")
            count = int(np.prod(dims))
            data = np.frombuffer(fp.read(), dtype=dtype)
    except (OSError, EOFError, struct.error) as err:
        raise FdaeError(f"{name}: {path}: unreadable ({err}); re-download the file.") from None
    check(data.size == count, name, path, f"holds {data.size:,} values, its header says {count:,}")
    return data.reshape(dims)


class SmallNORBFile(FileDataset):
    """SmallNORB from the six binary files (training + testing)."""

    name = "smallnorb"
    factor_names = ("category", "elevation", "azimuth", "lighting")
    factor_sizes = (5, 9, 18, 6)
    num_channels = 1
    published = PUBLISHED

    def __init__(self, root: str | os.PathLike | None = None, *, path: str | os.PathLike | None = None,
                 factor_sizes: tuple[int, ...] | None = None, num_instances: int = 10) -> None:
        if factor_sizes is not None:  # small test files only; see FileDataset
            self.factor_sizes = tuple(int(s) for s in factor_sizes)
        self.num_instances = num_instances
        if path:
            self.path = Path(path)
        else:
            folder = find_file(self.name, resolve_root(root), ("smallnorb", "."), PUBLISHED)
            self.path = folder
        self.files = {(split, kind): self._file(split, kind) for split in SPLITS for kind in ("dat", "cat", "info")}
        self._row_table = self._build_table()
        self._images: np.ndarray | None = None

    def _file(self, split: str, kind: str) -> Path:
        for suffix in (".mat", ".mat.gz"):
            p = self.path / f"{split}-{kind}{suffix}"
            if p.exists():
                return p
        raise FdaeError(
            f"{self.name}: file '{split}-{kind}.mat' (or .mat.gz) not found in '{self.path}'. "
            f"Download the six files from {PUBLISHED} into that folder, or point --data-root at it."
        )

    def _build_table(self) -> np.ndarray:
        """row_of[category, instance, elevation, azimuth, lighting] over both splits."""
        cats, infos = [], []
        for split in SPLITS:
            cat = read_matrix(self.files[split, "cat"], self.name).reshape(-1)
            info = read_matrix(self.files[split, "info"], self.name)
            check(info.ndim == 2 and info.shape == (len(cat), 4), self.name, self.files[split, "info"],
                  f"expected ({len(cat)}, 4) (one row per image in -cat), got {info.shape}")
            cats.append(cat)
            infos.append(info)
        feats = np.column_stack([np.concatenate(cats), np.concatenate(infos)]).astype(np.int64)
        feats[:, 3] //= 2  # azimuth is stored as 0, 2, ..., 34
        sizes = (self.factor_sizes[0], self.num_instances) + tuple(self.factor_sizes[1:])
        total = int(np.prod(sizes))
        where = self.files[SPLITS[0], "info"].parent
        check(len(feats) == total, self.name, where,
              f"the files hold {len(feats):,} images, expected {total:,} (= {' x '.join(map(str, sizes))})")
        check(bool(np.all((feats >= 0) & (feats < np.asarray(sizes)))), self.name, where,
              "a category/instance/elevation/azimuth/lighting label is out of range")
        table = np.full(sizes, -1, dtype=np.int64)
        table[tuple(feats.T)] = np.arange(len(feats))
        check(bool(np.all(table >= 0)), self.name, where, "some factor combinations are missing (duplicated labels)")
        return table

    def _decode(self) -> np.ndarray:
        from PIL import Image
        from tqdm import tqdm

        ident = "|".join(f"{p.resolve()}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in self.files.values())
        cache = cache_dir() / f"smallnorb-{hashlib.sha1(ident.encode()).hexdigest()[:16]}.npy"

        def build() -> np.ndarray:
            parts = []
            for split in SPLITS:
                dat = read_matrix(self.files[split, "dat"], self.name)
                check(dat.ndim == 4 and dat.shape[1:] == (2, 96, 96) and dat.dtype == np.uint8, self.name,
                      self.files[split, "dat"], f"expected uint8 (N, 2, 96, 96), got {dat.dtype} {dat.shape}")
                out = np.empty((len(dat), 64, 64), dtype=np.uint8)
                for i in tqdm(range(len(dat)), desc=f"{self.name}: resizing {split} once", unit="img",
                              disable=len(dat) < 1000):
                    out[i] = np.asarray(Image.fromarray(dat[i, 0]).resize((64, 64), Image.LANCZOS))
                parts.append(out)
            return np.concatenate(parts)

        images = cached_npy(cache, build)
        check(len(images) == self._row_table.size, self.name, self.path,
              f"-dat files hold {len(images):,} images, the -cat/-info files {self._row_table.size:,}")
        return images

    def _rows_for(self, factors: np.ndarray, instance: np.ndarray) -> np.ndarray:
        f = factors.reshape(-1, 4)
        return self._row_table[f[:, 0], instance.reshape(-1), f[:, 1], f[:, 2], f[:, 3]]

    def _rows_of(self, factors: np.ndarray) -> np.ndarray:
        flat = np.asarray(self.index_of(factors), dtype=np.int64).reshape(-1)
        return self._rows_for(factors, flat % self.num_instances)

    def _u8(self, rows: np.ndarray, device: Any) -> torch.Tensor:
        data = read_sorted(self._read_rows, rows)[:, None]
        out = torch.from_numpy(np.ascontiguousarray(data))
        return out.to(device) if device is not None else out

    def sample_observations_from_factors(self, factors: Any, random_state: np.random.RandomState) -> np.ndarray:
        """As disentanglement_lib: the nuisance instance is drawn from `random_state`."""
        f = self.check_factors(factors).reshape(-1, 4)
        instance = random_state.randint(self.num_instances, size=len(f))
        u8 = self._u8(self._rows_for(f, instance), "cpu")
        return u8.permute(0, 2, 3, 1).numpy().astype(np.float32) / np.float32(255.0)

    def sample_batch(self, batch_size: int, generator: torch.Generator, device: Any = None):
        factors = self.random_factors(batch_size, generator, device)
        instance = torch.randint(self.num_instances, (batch_size,), generator=generator, device=factors.device)
        rows = self._rows_for(factors.cpu().numpy(), instance.cpu().numpy())
        return uint8_to_signed(self._u8(rows, factors.device)), factors
