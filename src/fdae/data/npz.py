"""Reading members of `.npz` files without loading them whole.

An uncompressed member is memory-mapped in place (its bytes sit contiguously inside
the zip). A compressed member is streamed in chunks of rows, so a 3 GB array can be
packed or copied without 3 GB of RAM.
"""

from __future__ import annotations

import fcntl
import os
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Iterator

import numpy as np
from numpy.lib import format as npy_format

from fdae.errors import FdaeError


def _open_zip(path: Path, name: str) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as err:
        raise FdaeError(
            f"{name}: {path}: not a readable .npz file ({err}); re-download the original file."
        ) from None


def _read_header(fp) -> tuple[tuple[int, ...], np.dtype, bool]:
    version = npy_format.read_magic(fp)
    if version == (1, 0):
        return npy_format.read_array_header_1_0(fp)
    return npy_format.read_array_header_2_0(fp)


def members(path: Path, name: str) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Shape and dtype of every array in the npz (reads headers only)."""
    out = {}
    with _open_zip(path, name) as zf:
        for info in zf.infolist():
            if not info.filename.endswith(".npy"):
                continue
            with zf.open(info) as fp:
                shape, fortran, dtype = _read_header(fp)
            out[info.filename[:-4]] = (tuple(shape), np.dtype(dtype))
    return out


def memmap(path: Path, key: str, name: str) -> np.ndarray | None:
    """A read-only memory map of an uncompressed member; None if it is compressed."""
    with _open_zip(path, name) as zf:
        info = zf.getinfo(key + ".npy")
        if info.compress_type != zipfile.ZIP_STORED:
            return None
        with open(path, "rb") as raw:
            raw.seek(info.header_offset)
            local = raw.read(30)
            name_len, extra_len = struct.unpack("<HH", local[26:30])
            raw.seek(info.header_offset + 30 + name_len + extra_len)
            shape, fortran, dtype = _read_header(raw)
            offset = raw.tell()
    if fortran or dtype.hasobject:
        return None
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=tuple(shape))


def iter_rows(path: Path, key: str, name: str, chunk: int = 4096) -> Iterator[np.ndarray]:
    """Stream a member's rows in chunks (works for compressed members)."""
    with _open_zip(path, name) as zf, zf.open(key + ".npy") as fp:
        shape, fortran, dtype = _read_header(fp)
        if fortran and len(shape) > 1:
            raise FdaeError(f"{name}: {path}: '{key}' is stored in Fortran (column-major) order, which cannot be "
                            f"read row by row; save it again with np.ascontiguousarray (C order).")
        row_shape = tuple(shape[1:])
        row_bytes = int(np.prod(row_shape, dtype=np.int64)) * dtype.itemsize
        left = shape[0]
        while left:
            n = min(chunk, left)
            try:
                buf = fp.read(n * row_bytes)
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as err:
                raise FdaeError(f"{name}: {path}: '{key}' is corrupt ({err}); re-download the file.") from None
            if len(buf) != n * row_bytes:
                raise FdaeError(f"{name}: {path}: '{key}' is truncated; re-download the file.")
            yield np.frombuffer(buf, dtype=dtype).reshape((n,) + row_shape)
            left -= n


def load_or_cache(path: Path, key: str, name: str, cache_file: Path, in_ram_limit: int) -> np.ndarray:
    """The member as an array: memory-mapped in place, loaded (small), or cached as .npy."""
    mapped = memmap(path, key, name)
    if mapped is not None:
        return mapped
    shape, dtype = members(path, name)[key]
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if nbytes <= in_ram_limit:
        return np.concatenate(list(iter_rows(path, key, name)), axis=0)
    stamp = cache_file.with_suffix(".src")
    ident = f"{path.resolve()}:{path.stat().st_size}:{path.stat().st_mtime_ns}"
    if not _cache_current(cache_file, stamp, ident):
        # One process decodes (DDP ranks and parallel jobs wait on the lock), into a
        # temporary file renamed into place: a reader never sees a half-written cache and
        # a process that still maps an old one keeps its (unlinked) file.
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        with open(cache_file.with_name(cache_file.name + ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes (or the process dies)
            if not _cache_current(cache_file, stamp, ident):
                _decode_to(cache_file, stamp, ident, path, key, name, shape, dtype)
    return np.load(cache_file, mmap_mode="r")


def _cache_current(cache_file: Path, stamp: Path, ident: str) -> bool:
    return cache_file.exists() and stamp.exists() and stamp.read_text() == ident


def _decode_to(cache_file: Path, stamp: Path, ident: str, path: Path, key: str, name: str,
               shape: tuple[int, ...], dtype: np.dtype) -> None:
    from tqdm import tqdm

    stamp.unlink(missing_ok=True)
    tmp = cache_file.with_name(f"{cache_file.stem}.{os.getpid()}.partial.npy")
    try:
        out = npy_format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
        pos = 0
        with tqdm(total=shape[0], desc=f"{name}: decompressing {path.name} once", unit="img") as bar:
            for rows in iter_rows(path, key, name):
                out[pos : pos + len(rows)] = rows
                pos += len(rows)
                bar.update(len(rows))
        out.flush()
        del out
        os.replace(tmp, cache_file)
    finally:
        tmp.unlink(missing_ok=True)
    stamp.write_text(ident)
