"""A table of pre-rendered rows that are rendered on first use and then only gathered.

Why: the MPI3D and Cars3D look-alikes have too many distinct views to ray cast up front
in every process (tens of thousands, a minute or more on a CPU), yet each view is
needed again and again in training. So each row is ray cast once, on the CPU in float64
(identical bits whatever device asks, whatever batch it came in), kept, and copied to
each device the first time that device needs it. A test or a preview that draws twenty
images pays for twenty rows; once every row exists, a lookup is a plain gather with no
host round trip.

With a `cache_name`, a table that is complete is saved to the cache folder
($FDAE_CACHE_DIR) under a name that includes a hash of the renderer's source, and the
next process starts from it; a renderer change makes a new name, never a stale table.
Once half of a cached table's rows exist (a training run or an evaluation gets there
early), the rest are rendered at once and the table saved: every later process on the
machine then starts complete, instead of each paying for the same rows again.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from fdae.data.base import single_thread

COMPLETE_AFTER = 0.5  # fraction of a cached table's rows after which the rest are rendered and saved


class LazyTable:
    """`num_rows` rows of shape `row_shape` (uint8), made by `render(ids) -> rows`."""

    def __init__(self, num_rows: int, row_shape: tuple[int, ...], render: Callable[[np.ndarray], torch.Tensor],
                 chunk: int = 64, dtype: torch.dtype = torch.uint8, cache_name: str | None = None,
                 sources: tuple[str, ...] = ()) -> None:
        self.num_rows, self.row_shape, self.chunk = num_rows, tuple(row_shape), chunk
        self._render = render
        self._cpu = torch.zeros((num_rows, *row_shape), dtype=dtype)
        self._done = np.zeros(num_rows, dtype=bool)
        self._cache = _cache_path(cache_name, sources) if cache_name else None
        if self._cache is not None and self._cache.exists():
            try:
                saved = torch.from_numpy(np.load(self._cache))
                if saved.shape == self._cpu.shape and saved.dtype == dtype:
                    self._cpu, self._done[:] = saved, True
            except (ValueError, OSError, EOFError):  # damaged: render again, overwrite later
                pass
        self._devices: dict[str, tuple[torch.Tensor, np.ndarray]] = {}
        self._complete: set[str] = set()
        self._lock = threading.Lock()

    @property
    def num_rendered(self) -> int:
        return int(self._done.sum())

    def _fill(self, ids: np.ndarray, progress: Callable[[int], None] | None = None) -> None:
        missing = np.unique(ids[~self._done[ids]])
        with single_thread():  # many small float64 ops: threads cost more than they gain
            for lo in range(0, len(missing), self.chunk):
                part = missing[lo : lo + self.chunk]
                self._cpu[torch.from_numpy(part)] = self._render(part)
                self._done[part] = True
                if progress is not None:
                    progress(len(part))
        if len(missing) and self._cache is not None:
            if not self._done.all() and self._done.mean() >= COMPLETE_AFTER:
                self._fill(np.arange(self.num_rows))  # the other half, once for this machine
            elif self._done.all():
                self._save()

    def _save(self) -> None:
        """Write the complete table atomically; a read-only cache folder only costs speed."""
        try:
            tmp = self._cache.with_name(f"{self._cache.stem}.{os.getpid()}.partial.npy")
            np.save(tmp, self._cpu.numpy())
            os.replace(tmp, self._cache)
        except OSError:
            pass

    def render_all(self, progress: Callable[[int], None] | None = None) -> None:
        """Render every row now (before an export, or to time the warm path)."""
        with self._lock:
            self._fill(np.arange(self.num_rows), progress)

    def rows(self, ids: torch.Tensor) -> torch.Tensor:
        """Rows `ids` (int64 tensor, any shape) on the device of `ids`."""
        device = ids.device
        key = str(device)
        if key in self._complete:
            return self._devices[key][0][ids]
        with self._lock:
            ids_np = ids.detach().to("cpu").numpy().reshape(-1)
            self._fill(ids_np)
            if device.type == "cpu":
                if self._done.all():
                    self._complete.add(key)
                    self._devices[key] = (self._cpu, self._done)
                return self._cpu[ids.cpu()]
            if key not in self._devices:
                if self._done.all():  # complete on the CPU (e.g. from the cache): copy it whole, once
                    self._devices[key] = (self._cpu.to(device), np.ones(self.num_rows, dtype=bool))
                    self._complete.add(key)
                    return self._devices[key][0][ids]
                self._devices[key] = (torch.zeros_like(self._cpu, device=device), np.zeros(self.num_rows, dtype=bool))
            table, done = self._devices[key]
            need = np.unique(ids_np[~done[ids_np]])
            if len(need):
                idx = torch.from_numpy(need)
                table[idx.to(device)] = self._cpu[idx].to(device)
                done[need] = True
            if done.all():
                self._complete.add(key)
            return table[ids]


def _cache_path(name: str, sources: tuple[str, ...]) -> Path | None:
    from fdae.data.files import cache_dir
    from fdae.errors import FdaeError

    digest = hashlib.sha1()
    for src in sources:
        digest.update(Path(src).read_bytes())
    try:
        return cache_dir() / f"{name}-{digest.hexdigest()[:12]}.npy"
    except FdaeError:  # no writable cache folder: render every time
        return None
