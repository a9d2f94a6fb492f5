"""Dataset names -> constructors, plus what `fdae data list` shows about each.

Procedural stand-ins carry `-synth` in their names and are never substituted for a
real dataset: asking for `shapes3d` without the file is an error, not a fallback.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from fdae.data.base import GroundTruthDataset
from fdae.data.files import resolve_root
from fdae.errors import FdaeError


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    procedural: bool
    factor_sizes: tuple[int, ...]
    files: tuple[str, ...]  # relative to the data root; the first is the one to create
    published: str
    summary: str


def _infos() -> dict[str, DatasetInfo]:
    from fdae.data import cars3d, dsprites, mpi3d, shapes3d, smallnorb

    out = {
        "shapes3d-synth": DatasetInfo("shapes3d-synth", True, (10, 10, 10, 8, 4, 15), (), "built in",
                                      "procedural 3D Shapes look-alike (torch ray casting)"),
        "dsprites-synth": DatasetInfo("dsprites-synth", True, (3, 6, 40, 32, 32), (), "built in",
                                      "procedural dSprites look-alike (binary sprites)"),
        "mpi3d-synth": DatasetInfo("mpi3d-synth", True, (6, 6, 2, 3, 3, 40, 40), (), "built in",
                                   "procedural MPI3D-toy look-alike (robot arm, torch ray casting)"),
        "cars3d-synth": DatasetInfo("cars3d-synth", True, (4, 24, 183), (), "built in",
                                    "procedural Cars3D look-alike (183 generated cars)"),
        "shapes3d": DatasetInfo("shapes3d", False, (10, 10, 10, 8, 4, 15),
                                (shapes3d.FILE, f"shapes3d/{shapes3d.FILE}"), shapes3d.PUBLISHED, "DeepMind 3D Shapes"),
        "dsprites": DatasetInfo("dsprites", False, (3, 6, 40, 32, 32),
                                (dsprites.FILE, f"dsprites/{dsprites.FILE}"), dsprites.PUBLISHED, "DeepMind dSprites"),
    }
    for name, (file, sizes) in mpi3d.VARIANTS.items():
        out[name] = DatasetInfo(name, False, sizes, (file, f"mpi3d/{file}"), mpi3d.PUBLISHED,
                                f"MPI3D {name.split('-', 1)[1]}")
    out["cars3d"] = DatasetInfo("cars3d", False, (4, 24, 183), ("cars", "cars3d"), cars3d.PUBLISHED,
                                "Cars3D (183 .mat files)")
    out["smallnorb"] = DatasetInfo("smallnorb", False, (5, 9, 18, 6),
                                   (f"smallnorb/{smallnorb.SPLITS[0]}-dat.mat", f"{smallnorb.SPLITS[0]}-dat.mat",
                                    f"smallnorb/{smallnorb.SPLITS[0]}-dat.mat.gz", f"{smallnorb.SPLITS[0]}-dat.mat.gz"),
                                   smallnorb.PUBLISHED, "small NORB (6 binary matrix files)")
    return out


def _factories() -> dict[str, Callable[..., GroundTruthDataset]]:
    from fdae.data.cars3d import Cars3DFile
    from fdae.data.dsprites import DSpritesFile
    from fdae.data.cars3d_synth import Cars3DSynth
    from fdae.data.dsprites_synth import DSpritesSynth
    from fdae.data.mpi3d_synth import MPI3DSynth
    from fdae.data.mpi3d import VARIANTS, MPI3DFile
    from fdae.data.shapes3d import Shapes3DFile
    from fdae.data.shapes3d_synth import Shapes3DSynth
    from fdae.data.smallnorb import SmallNORBFile

    out: dict[str, Callable[..., GroundTruthDataset]] = {
        "shapes3d-synth": lambda root=None, **kw: Shapes3DSynth(),
        "dsprites-synth": lambda root=None, **kw: DSpritesSynth(),
        "mpi3d-synth": lambda root=None, **kw: MPI3DSynth(),
        "cars3d-synth": lambda root=None, **kw: Cars3DSynth(),
        "shapes3d": Shapes3DFile,
        "dsprites": DSpritesFile,
        "cars3d": Cars3DFile,
        "smallnorb": SmallNORBFile,
    }
    for name in VARIANTS:
        out[name] = lambda root=None, _n=name, **kw: MPI3DFile(_n, root, **kw)
    return out


def list_datasets() -> list[str]:
    """All dataset names, procedural first."""
    return list(_infos())


def dataset_info(name: str) -> DatasetInfo:
    infos = _infos()
    if name not in infos:
        raise FdaeError(f"unknown dataset '{name}'; choose one of: {', '.join(infos)} (see `fdae data list`), "
                        "or folder:PATH for a folder of your own images.")
    return infos[name]


def get_dataset(name: str, root: str | os.PathLike | None = None, image_size: int | None = None, **kwargs):
    """The dataset called `name`; file datasets look under `root` (else $FDAE_DATA_ROOT).

    `folder:PATH` is a folder of your own images (`fdae.data.folder.ImageFolder`, no
    factors; `root` is not used), resized to `image_size` (default 64). The ground-truth
    datasets are 64 px; `image_size` 32 or 16 box-filters them (`fdae.data.resize`). kwargs go to the file readers (`path=` for an explicit
    file, `factor_sizes=` for reduced test files).
    """
    if isinstance(name, str) and name.startswith("folder:"):
        from fdae.data.folder import ImageFolder

        return ImageFolder(name, image_size=image_size, **kwargs)
    dataset_info(name)  # clear error for unknown names
    dataset = _factories()[name](root, **kwargs)
    if image_size is not None and int(image_size) != dataset.image_size:
        from fdae.data.resize import Downsampled

        if int(image_size) > dataset.image_size or dataset.image_size % int(image_size):
            raise FdaeError(f"{name} has {dataset.image_size}x{dataset.image_size} images; data.image_size may lower "
                            f"that to 32 or 16, got {image_size}. Higher resolutions are for image folders "
                            "(data.name=folder:PATH).")
        return Downsampled(dataset, int(image_size))
    return dataset


def locate(name: str, root: str | os.PathLike | None = None) -> Path | None:
    """Where a file dataset's file is under the root, or None (procedural: None)."""
    info = dataset_info(name)
    base = resolve_root(root)
    if info.procedural or base is None:
        return None
    for rel in info.files:
        if (base / rel).exists():
            return base / rel
    return None
