"""Shared plumbing of the file-backed datasets: where files are, clear errors, row reads.

Real datasets are big (3D Shapes 5.9 GB as uint8, MPI3D 12.7 GB), so a file dataset
never loads a whole file unless it is small: it reads the rows a batch needs, sorted
(h5py needs increasing indices; memory maps read faster in order).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from fdae.data.base import GroundTruthDataset
from fdae.errors import FdaeError

ENV_ROOT = "FDAE_DATA_ROOT"
ENV_CACHE = "FDAE_CACHE_DIR"


def resolve_root(root: str | os.PathLike | None) -> Path | None:
    """The data root: the argument, else $FDAE_DATA_ROOT, else None."""
    if root is None:
        root = os.environ.get(ENV_ROOT) or None
    return Path(root).expanduser() if root is not None else None


def cache_dir() -> Path:
    """Where decoded copies of compressed files go ($FDAE_CACHE_DIR or ~/.cache/fdae)."""
    path = Path(os.environ.get(ENV_CACHE) or Path.home() / ".cache" / "fdae")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise FdaeError(f"cannot use the cache folder {path} ({err.strerror}); point ${ENV_CACHE} at a "
                        f"writable folder") from None
    return path


def find_file(name: str, root: Path | None, relpaths: tuple[str, ...], published: str) -> Path:
    """The first of `relpaths` that exists under `root`, else one clear FdaeError."""
    expected = relpaths[0]
    if root is None:
        raise FdaeError(
            f"{name}: no data root given; expected the file '{expected}' under it. "
            f"Give it with data.root=DIR (fdae train), --data-root DIR (fdae eval, viz, data) or "
            f"{ENV_ROOT}=DIR. The dataset is published at {published}."
        )
    for rel in relpaths:
        if (root / rel).exists():
            return root / rel
    also = f" (also looked for {', '.join(relpaths[1:])})" if len(relpaths) > 1 else ""
    raise FdaeError(
        f"{name}: file '{expected}' not found in data root '{root}'{also}. "
        f"Download it from {published} and put it there, or point data.root (fdae train), --data-root "
        f"(fdae eval, viz, data) or {ENV_ROOT} at the folder that holds it."
    )


def check(cond: bool, name: str, path: Path, problem: str, fix: str = "") -> None:
    """Raise one FdaeError naming the file, the problem and the fix when `cond` fails."""
    if not cond:
        fix = fix or "re-download the original file; it does not have the published layout"
        raise FdaeError(f"{name}: {path}: {problem}; {fix}.")


def read_sorted(read: Callable[[np.ndarray], np.ndarray], rows: np.ndarray) -> np.ndarray:
    """Read rows through `read` in increasing order without duplicates, then restore order."""
    uniq, inverse = np.unique(rows, return_inverse=True)
    return read(uniq)[inverse.reshape(-1)]


def cached_npy(cache: Path, build: Callable[[], np.ndarray]) -> np.ndarray:
    """A decoded copy kept as .npy: loaded when a complete one exists, else built and
    written to a temporary file that is renamed into place, so an interrupted write
    never leaves a truncated cache behind (a damaged one is rebuilt)."""
    if cache.exists():
        try:
            return np.load(cache)
        except (ValueError, OSError, EOFError):
            cache.unlink(missing_ok=True)
    array = build()
    tmp = cache.with_name(f"{cache.stem}.{os.getpid()}.partial.npy")
    np.save(tmp, array)
    os.replace(tmp, cache)
    return array


class FileDataset(GroundTruthDataset):
    """A dataset whose images are rows of a file (or of a decoded copy of one).

    Subclasses implement `_read_rows(rows)` -> uint8 (n, 64, 64, C) for sorted unique
    rows, and may override `_rows_of(factors)` when rows are not the flat index.
    `factor_sizes=` overrides the published grid: for small files written by tests only;
    by default the published sizes are checked against the file.
    """

    procedural = False
    published: str = ""

    def _locate(self, root: Any, path: Any, factor_sizes: Any, candidates: tuple[str, ...]) -> Path:
        """The file: an explicit `path`, or the first candidate found under the data root.
        A `factor_sizes` override (small test files only) replaces the published grid."""
        if factor_sizes is not None:
            self.factor_sizes = tuple(int(s) for s in factor_sizes)
        return Path(path) if path else find_file(self.name, resolve_root(root), candidates, self.published)

    def _rows_of(self, factors: np.ndarray) -> np.ndarray:
        return np.asarray(self.index_of(factors), dtype=np.int64).reshape(-1)

    def _read_rows(self, rows: np.ndarray) -> np.ndarray:
        """Rows of the decoded images; readers of compressed or many-file datasets
        implement `_decode` (called once, usually through `cached_npy`)."""
        images = getattr(self, "_images", None)
        if images is None:
            images = self._images = self._decode()
        return images[rows]

    def _decode(self) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} reads rows another way")

    def images_uint8(self, factors: Any, device: Any = None) -> torch.Tensor:
        if device is None and isinstance(factors, torch.Tensor):
            device = factors.device
        f = self.check_factors(factors).reshape(-1, self.num_factors)
        data = read_sorted(self._read_rows, self._rows_of(f))
        if data.ndim == 3:
            data = data[..., None]
        out = torch.from_numpy(np.ascontiguousarray(data)).permute(0, 3, 1, 2)
        return out.to(device) if device is not None else out
