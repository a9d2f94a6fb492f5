"""`folder:PATH`: a folder of your own images (no factors), optionally with `labels.csv`.

    ds = get_dataset("folder:/data/my_images")              # 64 px
    ds = get_dataset("folder:/data/my_images", image_size=128)
    images, rows = ds.sample_batch(32, torch.Generator().manual_seed(0), "cpu")

Reading. JPEG, PNG and WebP files (any case of .jpg/.jpeg/.png/.webp) are found
recursively; names starting with "." (hidden files and folders, macOS `._*` forks) are
ignored. Each image is EXIF-rotated, converted to RGB (greyscale and 16-bit greyscale
are replicated; transparency is composited over white), centre-cropped to a square and
resized (bicubic, antialiased) to `image_size`.

The cache. Images are decoded once, in parallel threads, into a uint8 array
(N, 3, S, S) stored raw under $FDAE_CACHE_DIR/folders/ (default ~/.cache/fdae) and
memory-mapped; training reads no image file. The cache is keyed by the folder's path,
the resolution and its list of image files with their sizes and modification times, and
is rebuilt when any of them changes. It is written into a temporary folder that is
renamed into place after a completion marker (holding the key) is written, under a file
lock (concurrent processes, e.g. DDP ranks, build it once): an interrupted build leaves
no marker and is rebuilt on the next use.

Bad input. A missing path, a folder without images and a folder none of whose images
can be read raise one FdaeError each. Unreadable or corrupt files are skipped; their
count and the first few names are reported once, when the cache is built (and kept in
`skipped`).

Labels. An optional `labels.csv` at the folder's root: a header row, then one row per
image: the file (its path relative to the folder, or its bare name if that is unique),
then one column per attribute with integer or string values (an empty cell: unknown).
Each attribute's values are coded 0..K-1 in sorted order (`labels.classes`). The linear
probe (`fdae.metrics.probe`) reads them; when the attributes form a full grid (every
combination of their values has at least one image), `ground_truth()` returns a
`GroundTruthDataset` view on which the standard metrics run.
"""

from __future__ import annotations

import csv
import fcntl
import hashlib
import json
import os
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from fdae.data.base import GroundTruthDataset, uint8_to_signed
from fdae.data.files import cache_dir, read_sorted
from fdae.errors import FdaeError

PREFIX = "folder:"
EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")
LABELS_FILE = "labels.csv"
DEFAULT_SIZE = 64
CACHE_VERSION = 1  # bump when decoding changes: old caches are then rebuilt
MARKER = "COMPLETE"
SHOWN_SKIPPED = 5  # names of unreadable files shown in the report
ENV_DEVICE_BYTES = "FDAE_FOLDER_DEVICE_BYTES"  # largest cache copied whole to an accelerator
DEFAULT_DEVICE_BYTES = 2 << 30


def is_folder_name(name: str) -> bool:
    return isinstance(name, str) and name.startswith(PREFIX)


def folder_path(name: str) -> Path:
    """`folder:PATH` -> the absolute path (user ~ expanded)."""
    raw = name[len(PREFIX):] if is_folder_name(name) else name
    if not raw.strip():
        raise FdaeError("dataset 'folder:' names no folder; write data.name=folder:/path/to/images.")
    return Path(raw).expanduser().absolute()


# ------------------------------------------------------------------- scanning
def scan(folder: Path) -> tuple[list[str], list[tuple[int, int]], int]:
    """Image files under `folder` (posix paths relative to it, sorted), their
    (size, mtime_ns), and how many other (non-image, non-hidden) files were seen."""
    files, others = [], 0
    seen = {os.path.realpath(folder)}  # linked subfolders are followed, each real folder once (no cycles)
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        keep = []
        for d in sorted(d for d in dirnames if not d.startswith(".")):
            real = os.path.realpath(os.path.join(dirpath, d))
            if real not in seen:
                seen.add(real)
                keep.append(d)
        dirnames[:] = keep
        for fn in filenames:
            if fn.startswith("."):
                continue
            if fn.lower().endswith(EXTENSIONS):
                files.append(Path(dirpath, fn).relative_to(folder).as_posix())
            elif fn != LABELS_FILE:
                others += 1
    files.sort()
    stats = []
    for rel in files:
        st = os.stat(folder / rel)
        stats.append((int(st.st_size), int(st.st_mtime_ns)))
    return files, stats, others


def cache_key(folder: Path, image_size: int, files: list[str], stats: list[tuple[int, int]]) -> str:
    h = hashlib.sha256()
    h.update(json.dumps({"version": CACHE_VERSION, "folder": str(folder), "size": image_size}).encode())
    for rel, (size, mtime) in zip(files, stats):
        h.update(f"\n{rel}\t{size}\t{mtime}".encode())
    return h.hexdigest()


def cache_location(folder: Path, image_size: int) -> Path:
    """One cache folder per (image folder, resolution); replaced when the key changes."""
    tag = hashlib.sha256(str(folder).encode()).hexdigest()[:12]
    slug = "".join(c if c.isalnum() or c in "-_" else "_" for c in folder.name)[:40] or "root"
    return cache_dir() / "folders" / f"{slug}-{tag}-{image_size}px"


# ------------------------------------------------------------------- decoding
def _to_rgb(im):
    from PIL import Image

    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):  # 16-bit / float greyscale
        a = np.asarray(im, dtype=np.float32)
        if im.mode.startswith("I;16") or a.max(initial=0) > 255:
            a = a / 257.0
        im = Image.fromarray(np.clip(a + 0.5, 0, 255).astype(np.uint8), "L")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return im.convert("RGB") if im.mode != "RGB" else im


def decode_image(path: str | os.PathLike, size: int) -> np.ndarray:
    """One image file -> (3, size, size) uint8: EXIF-rotated, RGB, centre crop, resize."""
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        im.draft("RGB", (size, size))  # JPEG: decode at a reduced scale when it is large
        im.load()
        try:
            im = ImageOps.exif_transpose(im)
        except Exception:  # a broken EXIF block: keep the pixels as stored
            pass
        im = _to_rgb(im)
        w, h = im.size
        s = min(w, h)
        if s < 1:
            raise ValueError("empty image")
        left, top = (w - s) // 2, (h - s) // 2
        im = im.resize((size, size), Image.BICUBIC, box=(left, top, left + s, top + s))
        return np.asarray(im, dtype=np.uint8).transpose(2, 0, 1).copy()


def _try_decode(path: Path, size: int) -> np.ndarray | str:
    from PIL import UnidentifiedImageError

    try:
        return decode_image(path, size)
    except UnidentifiedImageError:
        return "not a readable image"
    except Exception as err:  # noqa: BLE001 - any unreadable file is skipped, never fatal
        text = str(err).replace(f"'{path}'", "").replace(str(path), "").strip()
        text = text.splitlines()[0] if text else type(err).__name__
        return text[:120]


def _decode_all(folder: Path, files: list[str], size: int, workers: int) -> Iterator[np.ndarray | str]:
    """Decoded images (or error strings) in file order; Pillow releases the GIL while
    decoding and resizing, so threads decode in parallel."""
    chunk = 256
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for start in range(0, len(files), chunk):
            part = files[start:start + chunk]
            yield from pool.map(lambda rel: _try_decode(folder / rel, size), part)


# ------------------------------------------------------------------- the cache
@dataclass
class CacheInfo:
    path: Path
    files: list[str]  # the images in the cache, in row order
    skipped: list[tuple[str, str]]  # (file, reason) of unreadable files
    built: bool  # decoded now (False: reused)


def _say_default(msg: str) -> None:
    print(f"[data] {msg}", file=sys.stderr, flush=True)


def _read_complete(loc: Path, key: str, image_size: int) -> CacheInfo | None:
    """The cache at `loc` if it is complete, for this key, and its file has the right size."""
    try:
        if (loc / MARKER).read_text() != key:
            return None
        manifest = json.loads((loc / "manifest.json").read_text())
        n = len(manifest["files"])
        if manifest["key"] != key or (loc / "images.u8").stat().st_size != n * 3 * image_size * image_size:
            return None
    except (OSError, ValueError, KeyError):
        return None
    return CacheInfo(loc, list(manifest["files"]), [tuple(x) for x in manifest["skipped"]], built=False)


def build_cache(folder: Path, image_size: int, say: Callable[[str], None] | None = None,
                workers: int | None = None) -> CacheInfo:
    """Decode the folder into its cache (or reuse a complete, current one)."""
    say = say or _say_default
    if not folder.exists():
        raise FdaeError(f"folder:{folder}: no such folder; give an existing folder of JPEG/PNG/WebP images, "
                        f"e.g. data.name=folder:/path/to/images.")
    if not folder.is_dir():
        raise FdaeError(f"folder:{folder}: is a file, not a folder; give the folder that holds the images "
                        f"(data.name=folder:{folder.parent}).")
    files, stats, others = scan(folder)
    if not files:
        seen = f" (it holds {others} other file{'s' if others != 1 else ''})" if others else " (it is empty)"
        raise FdaeError(f"folder:{folder}: no JPEG, PNG or WebP images found, subfolders included{seen}; "
                        f"put .jpg/.jpeg/.png/.webp files in it or point data.name=folder:PATH at another folder.")
    key = cache_key(folder, image_size, files, stats)
    loc = cache_location(folder, image_size)
    found = _read_complete(loc, key, image_size)
    if found is not None:
        return found
    loc.parent.mkdir(parents=True, exist_ok=True)
    with open(loc.parent / (loc.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes (or the process dies)
        found = _read_complete(loc, key, image_size)  # another process may have built it
        if found is not None:
            return found
        return _build_locked(folder, image_size, files, key, loc, say, workers)


def _build_locked(folder: Path, image_size: int, files: list[str], key: str, loc: Path,
                  say: Callable[[str], None], workers: int | None) -> CacheInfo:
    tmp = loc.parent / f"{loc.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    for stale in loc.parent.glob(f"{loc.name}.tmp-*"):  # left by interrupted builds (we hold the lock)
        shutil.rmtree(stale, ignore_errors=True)
    tmp.mkdir()
    workers = workers or max(1, min(8, os.cpu_count() or 1))
    kept: list[str] = []
    skipped: list[tuple[str, str]] = []
    row_bytes = 3 * image_size * image_size
    try:
        from tqdm import tqdm

        with open(tmp / "images.u8", "wb") as out, tqdm(
            total=len(files), desc=f"folder:{folder.name}: decoding {len(files)} images once", unit="img",
            disable=None if len(files) >= 1000 else True,
        ) as bar:
            for rel, img in zip(files, _decode_all(folder, files, image_size, workers)):
                if isinstance(img, str):
                    skipped.append((rel, img))
                else:
                    out.write(img.tobytes())
                    kept.append(rel)
                bar.update(1)
            out.flush()
            os.fsync(out.fileno())
        if not kept:
            first = "; ".join(f"{r}: {why}" for r, why in skipped[:SHOWN_SKIPPED])
            raise FdaeError(f"folder:{folder}: none of its {len(files)} image files could be read ({first}); "
                            f"check that they are valid JPEG/PNG/WebP images.")
        assert (tmp / "images.u8").stat().st_size == len(kept) * row_bytes
        manifest = {"key": key, "folder": str(folder), "image_size": image_size, "files": kept,
                    "skipped": [list(x) for x in skipped], "version": CACHE_VERSION}
        (tmp / "manifest.json").write_text(json.dumps(manifest))
        (tmp / MARKER).write_text(key)  # last: a folder without it is an interrupted build
        if loc.exists():
            old = loc.parent / f"{loc.name}.old-{os.getpid()}"
            os.rename(loc, old)
            os.rename(tmp, loc)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, loc)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    msg = f"folder:{folder}: decoded {len(kept)} images at {image_size}x{image_size} into {loc}"
    if skipped:
        names = ", ".join(f"{r} ({why})" for r, why in skipped[:SHOWN_SKIPPED])
        more = f" and {len(skipped) - SHOWN_SKIPPED} more" if len(skipped) > SHOWN_SKIPPED else ""
        msg += f"; skipped {len(skipped)} unreadable file{'s' if len(skipped) != 1 else ''}: {names}{more}"
    say(msg)
    return CacheInfo(loc, kept, skipped, built=True)


# ------------------------------------------------------------------- labels
@dataclass
class LabelTable:
    """Attributes of the folder's images from labels.csv, aligned with the dataset rows.

    values: (N, k) int64 class codes, -1 where unknown (no row, or an empty cell);
    classes[j]: the sorted original values of attribute j (ints or strings)."""

    names: tuple[str, ...]
    values: np.ndarray
    classes: list[list]
    path: Path
    unmatched: list[str] = field(default_factory=list)  # csv rows naming no image of the dataset

    @property
    def num_classes(self) -> tuple[int, ...]:
        return tuple(len(c) for c in self.classes)

    def labelled(self) -> np.ndarray:
        """Rows with every attribute known."""
        return np.all(self.values >= 0, axis=1)


def _parse_int(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def read_labels(path: Path, files: list[str]) -> LabelTable:
    """Parse labels.csv against the dataset's files (see the module docstring)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = [r for r in csv.reader(fh) if any(c.strip() for c in r)]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise FdaeError(f"{path}: cannot read it ({err}); write it as UTF-8 CSV: file,attribute1,attribute2,...") from None
    if len(rows) < 2 or len(rows[0]) < 2:
        raise FdaeError(f"{path}: needs a header row 'file,ATTRIBUTE,...' with at least one attribute column "
                        "and one row per image.")
    header = [h.strip() for h in rows[0]]
    names = tuple(header[1:])
    if any(not n for n in names) or len(set(names)) != len(names):
        raise FdaeError(f"{path}: attribute columns need distinct, non-empty names in the header (got {header}).")
    index = {rel: i for i, rel in enumerate(files)}
    by_base: dict[str, int] = {}
    for i, rel in enumerate(files):
        base = rel.rsplit("/", 1)[-1]
        by_base[base] = -1 if base in by_base else i  # -1: ambiguous
    raw: dict[int, list[str]] = {}
    unmatched: list[str] = []
    for lineno, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise FdaeError(f"{path}: line {lineno} has {len(row)} cells, the header has {len(header)}; "
                            "give one value per attribute (an empty cell means unknown).")
        name = row[0].strip().replace("\\", "/")
        name = name[2:] if name.startswith("./") else name
        i = index.get(name)
        if i is None:
            j = by_base.get(name)
            if j == -1:
                raise FdaeError(f"{path}: line {lineno}: '{name}' matches several images in subfolders; "
                                "write its path relative to the folder.")
            i = j
        if i is None:
            unmatched.append(name)
            continue
        if i in raw:
            raise FdaeError(f"{path}: line {lineno}: '{name}' is labelled twice; keep one row per image.")
        raw[i] = [c.strip() for c in row[1:]]
    if not raw:
        raise FdaeError(f"{path}: none of its {len(rows) - 1} rows names an image of the folder "
                        f"(first: '{unmatched[0]}'); the first column must hold file names or paths "
                        "relative to the folder.")
    values = np.full((len(files), len(names)), -1, dtype=np.int64)
    classes: list[list] = []
    for j in range(len(names)):
        cells = {i: cells[j] for i, cells in raw.items() if cells[j] != ""}
        ints = {i: _parse_int(v) for i, v in cells.items()}
        typed = ints if all(v is not None for v in ints.values()) else cells
        uniq = sorted(set(typed.values()))
        code = {v: c for c, v in enumerate(uniq)}
        for i, v in typed.items():
            values[i, j] = code[v]
        classes.append(uniq)
    return LabelTable(names, values, classes, path, unmatched)


# ------------------------------------------------------------------- the dataset
_REPORTED: set[tuple[str, int]] = set()


def _first_time(path: Path) -> bool:
    """True the first time this process reports on this version of `path`."""
    key = (str(path), path.stat().st_mtime_ns)
    if key in _REPORTED:
        return False
    _REPORTED.add(key)
    return True


class ImageFolder:
    """Images of a folder (no factor grid): what training, figures and the probe use.

    Not a GroundTruthDataset: the metrics need factors, which `ground_truth()` provides
    when labels.csv holds a full grid of them."""

    num_channels = 3
    procedural = False
    factor_sizes = None  # no ground-truth factors (see ground_truth())

    def __init__(self, path: str | os.PathLike, image_size: int | None = None, *,
                 say: Callable[[str], None] | None = None, workers: int | None = None):
        size = DEFAULT_SIZE if image_size is None else int(image_size)
        if size < 16 or size % 16:
            raise FdaeError(f"image size {image_size} is not supported; use a multiple of 16 (64 or 128).")
        self.folder = folder_path(str(path))
        self.name = f"{PREFIX}{self.folder}"
        self.image_size = size
        info = build_cache(self.folder, size, say=say, workers=workers)
        self.cache_path = info.path
        self.files = info.files
        self.skipped = info.skipped
        self.cache_built = info.built
        self._array = np.memmap(info.path / "images.u8", dtype=np.uint8, mode="r",
                                shape=(len(self.files), 3, size, size))
        self._on_device: dict[str, torch.Tensor] = {}
        labels_path = self.folder / LABELS_FILE
        self.labels: LabelTable | None = read_labels(labels_path, self.files) if labels_path.exists() else None
        if self.labels is not None and self.labels.unmatched and _first_time(labels_path):
            (say or _say_default)(
                f"{labels_path}: {len(self.labels.unmatched)} rows name no readable image of the folder "
                f"(first: {', '.join(self.labels.unmatched[:SHOWN_SKIPPED])}); they are ignored.")

    def __len__(self) -> int:
        return len(self.files)

    def __getstate__(self):  # memory maps and device copies are reopened, not pickled
        state = self.__dict__.copy()
        state["_array"] = None
        state["_on_device"] = {}
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        n, s = len(self.files), self.image_size
        self._array = np.memmap(self.cache_path / "images.u8", dtype=np.uint8, mode="r", shape=(n, 3, s, s))

    # ------------------------------------------------------------ images
    def _indices(self, indices: Any) -> np.ndarray:
        if isinstance(indices, torch.Tensor):
            idx = indices.detach().to("cpu", torch.int64).numpy().reshape(-1)
        else:
            idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise FdaeError(f"{self.name}: image index out of range [0, {len(self)}).")
        return idx

    def _device_copy(self, device: torch.device) -> torch.Tensor | None:
        """The whole cache on an accelerator, when it fits the byte budget."""
        if device.type == "cpu":
            return None
        key = str(device)
        if key not in self._on_device:
            limit = int(os.environ.get(ENV_DEVICE_BYTES, DEFAULT_DEVICE_BYTES))
            if self._array.nbytes > limit:
                return None
            self._on_device[key] = torch.from_numpy(np.ascontiguousarray(self._array)).to(device)
        return self._on_device[key]

    def images_uint8(self, indices: Any, device: Any = None, _checked: bool = False) -> torch.Tensor:
        """(n, 3, S, S) uint8 images of rows `indices` on `device`."""
        if device is None and isinstance(indices, torch.Tensor):
            device = indices.device
        device = torch.device(device) if device is not None else torch.device("cpu")
        on_device = self._device_copy(device)
        if on_device is not None:  # gather on the accelerator (no host round trip when in range by construction)
            idx_t = torch.as_tensor(indices, dtype=torch.int64).reshape(-1).to(device)
            if not _checked and idx_t.numel() and (int(idx_t.min()) < 0 or int(idx_t.max()) >= len(self)):
                raise FdaeError(f"{self.name}: image index out of range [0, {len(self)}).")
            return on_device.index_select(0, idx_t)
        idx = self._indices(indices)
        rows = read_sorted(lambda r: self._array[r], idx) if idx.size else np.zeros((0, 3, self.image_size,
                                                                                       self.image_size), np.uint8)
        out = torch.from_numpy(np.ascontiguousarray(rows))
        return out.to(device, non_blocking=True) if device.type != "cpu" else out

    def images_at(self, indices: Any, device: Any = None) -> torch.Tensor:
        """(n, 3, S, S) float32 in [-1, 1] of rows `indices` on `device`."""
        return uint8_to_signed(self.images_uint8(indices, device))

    def sample_batch(self, batch_size: int, generator: torch.Generator,
                     device: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        """A uniform random batch (images in [-1, 1], int64 row indices) on `device`."""
        device = torch.device(device) if device is not None else generator.device
        idx = torch.randint(len(self), (batch_size,), generator=generator, device=generator.device).to(device)
        return uint8_to_signed(self.images_uint8(idx, device, _checked=True)), idx

    def example_images(self, n: int, seed: int = 0, device: Any = None) -> torch.Tensor:
        """n images for figures, rows drawn with RandomState(seed) (distinct when possible)."""
        rows = np.random.RandomState(seed).choice(len(self), size=n, replace=n > len(self))
        return self.images_at(rows, device)

    def iter_images(self, batch_size: int = 256, device: Any = None,
                    rows: np.ndarray | None = None) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
        """(row indices, images in [-1, 1]) over `rows` (default: all), in order."""
        rows = np.arange(len(self)) if rows is None else np.asarray(rows, dtype=np.int64)
        for start in range(0, len(rows), batch_size):
            part = rows[start:start + batch_size]
            yield part, self.images_at(part, device)

    # ------------------------------------------------------------ labels / factors
    def ground_truth(self) -> "FolderGrid":
        """The labels as ground-truth factors (a GroundTruthDataset), or one FdaeError
        saying which labels the metrics need."""
        if self.labels is None:
            raise FdaeError(
                f"{self.name} has no labels: the metrics need ground-truth factors. Put {LABELS_FILE} in "
                f"{self.folder} (header 'file,ATTRIBUTE,...'; one row per image: its file name, then an integer "
                f"or string value per attribute) and run `fdae eval RUN_DIR --probe linear`; the DCI/MIG/... "
                f"metrics also need every combination of the attribute values to have an image.")
        grid = FolderGrid.from_folder(self)
        if grid is None:
            lab = self.labels
            sizes = "x".join(map(str, lab.num_classes))
            combos = len({tuple(r) for r in lab.values[lab.labelled()]})
            raise FdaeError(
                f"{self.name}: the attributes in {lab.path.name} ({', '.join(lab.names)}; {sizes} values) are not "
                f"a full factor grid ({combos} of {int(np.prod(lab.num_classes))} combinations have an image), so "
                f"the ground-truth metrics cannot sample them; use `fdae eval RUN_DIR --probe linear` (a linear "
                f"probe of the attributes), or label the images on a full grid.")
        return grid

    def describe(self) -> str:
        extra = f"; {len(self.skipped)} unreadable files skipped" if self.skipped else ""
        lab = f"; labels: {', '.join(self.labels.names)}" if self.labels is not None else "; no labels"
        return f"{self.name} (image folder; {len(self):,} images at {self.image_size}px{lab}{extra})"

    def __repr__(self) -> str:
        return f"<ImageFolder {self.describe()}>"


class FolderGrid(GroundTruthDataset):
    """A labelled folder whose attributes form a full grid, as ground-truth factors.

    The image of a factor combination is the first image (in file order) with those
    labels; images with an unknown attribute are not used."""

    procedural = False
    num_channels = 3

    def __init__(self, folder: ImageFolder, rows: np.ndarray):
        lab = folder.labels
        self.folder = folder
        self.name = folder.name
        self.image_size = folder.image_size
        self.factor_names = tuple(lab.names)
        self.factor_sizes = tuple(lab.num_classes)
        self._rows = rows  # flat factor index -> dataset row

    @classmethod
    def from_folder(cls, folder: ImageFolder) -> "FolderGrid | None":
        lab = folder.labels
        if lab is None or any(k < 1 for k in lab.num_classes):
            return None
        sizes = np.asarray(lab.num_classes, dtype=np.int64)
        strides = np.concatenate([np.cumprod(sizes[::-1])[::-1][1:], [1]]).astype(np.int64)
        total = int(np.prod(sizes))
        rows = np.full(total, -1, dtype=np.int64)
        ok = np.nonzero(lab.labelled())[0]
        flat = lab.values[ok] @ strides
        # first image per combination: write in reverse file order so the first wins
        rows[flat[::-1]] = ok[::-1]
        if np.any(rows < 0):
            return None
        return cls(folder, rows)

    def images_uint8(self, factors: Any, device: Any = None) -> torch.Tensor:
        if device is None and isinstance(factors, torch.Tensor):
            device = factors.device
        f = self.check_factors(factors).reshape(-1, self.num_factors)
        return self.folder.images_uint8(self._rows[self.index_of(f)], device)

    def describe(self) -> str:
        grid = ", ".join(f"{n} {s}" for n, s in zip(self.factor_names, self.factor_sizes))
        return f"{self.name} (labelled image folder as a factor grid; {grid})"


def as_ground_truth(dataset: Any) -> GroundTruthDataset:
    """`dataset` itself if it has factors, a labelled folder's grid view, or one FdaeError."""
    if isinstance(dataset, ImageFolder):
        return dataset.ground_truth()
    return dataset


def has_factors(dataset: Any) -> bool:
    """Whether the ground-truth metrics can run on `dataset` (directly or via its labels)."""
    if isinstance(dataset, ImageFolder):
        return dataset.labels is not None and FolderGrid.from_folder(dataset) is not None
    return getattr(dataset, "factor_sizes", None) is not None
