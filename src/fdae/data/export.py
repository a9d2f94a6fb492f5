"""Write a procedural dataset in its real file's layout, so the real readers are tested.

`shapes3d-synth` -> a `3dshapes.h5` (`images` uint8 (N,64,64,3), `labels` float64 (N,6));
`dsprites-synth` -> a dSprites npz (`imgs` uint8 {0,1} (N,64,64), `latents_classes` and
`latents_values` (N,6) with the constant color column first, `metadata`);
`mpi3d-synth` -> an `mpi3d_toy.npz` (`images` uint8 (N,64,64,3), stored uncompressed as
the MPI3D files are, so the reader memory-maps it);
`cars3d-synth` -> a `cars/` folder of one `.mat` per car, each `im` uint8
(128,128,3,azimuth,elevation) as Reed et al.'s files. Images are rendered in batches
and streamed to disk, so memory stays small at the full grid.
`limit_sizes` keeps only the first values of each factor (small files for tests; read
them back with `factor_sizes=limit_sizes`).
"""

from __future__ import annotations

import os
import shutil
import zipfile
from pathlib import Path
from typing import Iterator

import numpy as np
from numpy.lib import format as npy_format

from fdae.data.base import GroundTruthDataset
from fdae.data.registry import get_dataset
from fdae.errors import FdaeError

EXPORTABLE = {"shapes3d-synth": "3dshapes.h5 layout", "dsprites-synth": "dSprites npz layout",
              "mpi3d-synth": "mpi3d_toy.npz layout", "cars3d-synth": "Cars3D folder of .mat files"}
FOLDER_EXPORTS = {"cars3d-synth"}  # written as a folder, not a file


def _grid_batches(ds: GroundTruthDataset, sizes: tuple[int, ...], batch: int) -> Iterator[np.ndarray]:
    """Factor rows of the (reduced) grid in row-major order, `batch` at a time."""
    total = int(np.prod(sizes))
    strides = np.concatenate([np.cumprod(np.asarray(sizes)[::-1])[::-1][1:], [1]])
    for lo in range(0, total, batch):
        idx = np.arange(lo, min(lo + batch, total), dtype=np.int64)
        yield (idx[:, None] // strides) % np.asarray(sizes)


def _check_limits(ds: GroundTruthDataset, limit_sizes: tuple[int, ...] | None) -> tuple[int, ...]:
    if limit_sizes is None:
        return tuple(ds.factor_sizes)
    limit = tuple(int(s) for s in limit_sizes)
    if len(limit) != ds.num_factors or any(not 1 <= s <= m for s, m in zip(limit, ds.factor_sizes)):
        raise FdaeError(f"{ds.name}: --factor-sizes must give {ds.num_factors} numbers, each between 1 and "
                        f"the full size {list(ds.factor_sizes)}; got {list(limit)}.")
    return limit


def export(name: str, path: str | os.PathLike, limit_sizes: tuple[int, ...] | None = None,
           batch: int = 2048, progress: bool = True) -> Path:
    """Write procedural dataset `name` to `path` in the real file's layout; returns the path."""
    if name not in EXPORTABLE:
        raise FdaeError(f"cannot export '{name}': only procedural datasets can be exported "
                        f"({', '.join(EXPORTABLE)}).")
    ds = get_dataset(name)
    sizes = _check_limits(ds, limit_sizes)
    path = Path(path)
    if path.parent and not path.parent.exists():
        raise FdaeError(f"{name}: output folder '{path.parent}' does not exist; create it first.")
    from tqdm import tqdm

    bar = tqdm(total=int(np.prod(sizes)), desc=f"exporting {name} ({EXPORTABLE[name]})", unit="img",
               disable=not progress)
    if name in FOLDER_EXPORTS:
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise FdaeError(f"{name}: {path} already exists; give a new folder name (e.g. DATA_ROOT/cars).")
    elif path.is_dir():
        raise FdaeError(f"{name}: {path} is a folder; give a file name inside it.")
    tmp = path.with_name(path.name + ".partial")
    if tmp.is_dir():  # left by an export that was killed
        shutil.rmtree(tmp)
    writers = {"shapes3d-synth": _write_h5, "dsprites-synth": _write_npz, "mpi3d-synth": _write_mpi3d,
               "cars3d-synth": _write_cars}
    try:
        with bar:
            writers[name](ds, tmp, sizes, batch, bar)
        if name in FOLDER_EXPORTS and path.exists():
            path.rmdir()  # the empty folder the user made
        os.replace(tmp, path)
    finally:  # an error or Ctrl-C leaves no half-written file behind
        if tmp.is_dir():
            shutil.rmtree(tmp)
        else:
            tmp.unlink(missing_ok=True)
    return path


def _write_h5(ds, path: Path, sizes, batch: int, bar) -> None:
    import h5py

    n = int(np.prod(sizes))
    values = ds.factor_values()
    tables = [np.asarray(values[k], dtype=np.float64) for k in ds.factor_names]
    with h5py.File(path, "w") as h5:
        images = h5.create_dataset("images", (n, 64, 64, 3), dtype=np.uint8,
                                   chunks=(min(n, 16), 64, 64, 3), compression="gzip", compression_opts=1)
        labels = h5.create_dataset("labels", (n, 6), dtype=np.float64)
        pos = 0
        for f in _grid_batches(ds, sizes, batch):
            images[pos : pos + len(f)] = ds.images_uint8(f).permute(0, 2, 3, 1).numpy()
            labels[pos : pos + len(f)] = np.stack([t[f[:, i]] for i, t in enumerate(tables)], 1)
            pos += len(f)
            bar.update(len(f))


def _npy_member(zf: zipfile.ZipFile, key: str, array_like: np.ndarray, shape: tuple[int, ...]):
    """Open an .npy member for streaming rows of `array_like`'s dtype into it."""
    fp = zf.open(key + ".npy", "w", force_zip64=True)
    header = npy_format.header_data_from_array_1_0(array_like)
    header["shape"] = shape
    npy_format.write_array_header_1_0(fp, header)
    return fp


def _write_npz(ds, path: Path, sizes, batch: int, bar) -> None:
    n = int(np.prod(sizes))
    values = ds.factor_values()
    tables = [np.asarray(values[k], dtype=np.float64) for k in ds.factor_names]
    classes, vals = np.zeros((n, 6), np.int64), np.ones((n, 6), np.float64)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        with _npy_member(zf, "imgs", np.zeros((1, 64, 64), np.uint8), (n, 64, 64)) as fp:
            pos = 0
            for f in _grid_batches(ds, sizes, batch):
                fp.write((ds.images_uint8(f)[:, 0].numpy() // 255).astype(np.uint8).tobytes())
                classes[pos : pos + len(f), 1:] = f
                vals[pos : pos + len(f), 1:] = np.stack([t[f[:, i]] for i, t in enumerate(tables)], 1)
                pos += len(f)
                bar.update(len(f))
        for key, arr in (("latents_classes", classes), ("latents_values", vals)):
            with zf.open(key + ".npy", "w", force_zip64=True) as fp:
                npy_format.write_array(fp, arr)
        meta = np.array({"title": f"{ds.name} (fdae procedural stand-in, not the real dSprites)",
                         "latents_names": ("color",) + ds.factor_names,
                         "latents_sizes": np.array((1,) + tuple(sizes))}, dtype=object)
        with zf.open("metadata.npy", "w") as fp:
            npy_format.write_array(fp, meta, allow_pickle=True)


def _write_mpi3d(ds, path: Path, sizes, batch: int, bar) -> None:
    n = int(np.prod(sizes))
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        with _npy_member(zf, "images", np.zeros((1, 64, 64, 3), np.uint8), (n, 64, 64, 3)) as fp:
            for f in _grid_batches(ds, sizes, batch):
                fp.write(ds.images_uint8(f).permute(0, 2, 3, 1).contiguous().numpy().tobytes())
                bar.update(len(f))


def _write_cars(ds, path: Path, sizes, batch: int, bar) -> None:
    """One `car_NNN_mesh.mat` per car (names sort in object order), `im` (128,128,3,az,el)."""
    from scipy.io import savemat

    from fdae.data.cars3d_synth import render_views

    del ds, batch
    path.mkdir()
    n_el, n_az, n_cars = sizes
    for car in range(n_cars):
        views = render_views([(e, a, car) for e in range(n_el) for a in range(n_az)])  # elevation-major
        im = np.ascontiguousarray(views.reshape(n_el, n_az, 128, 128, 3).transpose(2, 3, 4, 1, 0))
        savemat(path / f"car_{car + 1:03d}_mesh.mat", {"im": im}, do_compression=True)
        bar.update(n_el * n_az)
