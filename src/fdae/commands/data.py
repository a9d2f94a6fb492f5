"""`fdae data list | preview | export`: inspect, look at and write out datasets."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from fdae.errors import FdaeError, require_output_file


def _root_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-root", default=None, metavar="DIR",
                   help="folder with the real dataset files (default: $FDAE_DATA_ROOT)")


def register(subparsers) -> None:
    p = subparsers.add_parser("data", help="list, preview and export ground-truth datasets",
                              description="Ground-truth datasets: procedural stand-ins and real files.")
    sub = p.add_subparsers(dest="data_command", metavar="ACTION")
    sub.required = True

    q = sub.add_parser("list", help="every dataset, procedural or file, found or not, with its factor sizes; "
                                    "then the presets and the dataset each trains on")
    _root_arg(q)
    q.set_defaults(func=cmd_list)

    q = sub.add_parser("preview", help="save a traversal grid (one row per factor)")
    q.add_argument("name", help="dataset name (see `fdae data list`)")
    q.add_argument("--out", default="grid.png", help="PNG to write (default: grid.png)")
    q.add_argument("--columns", type=int, default=10, help="values shown per factor (default: 10)")
    q.add_argument("--seed", type=int, default=0, help="seed of the fixed base factors (default: 0)")
    _root_arg(q)
    q.set_defaults(func=cmd_preview)

    q = sub.add_parser("export", help="write a procedural dataset in the real file's layout")
    q.add_argument("name", help="shapes3d-synth (-> 3dshapes.h5), dsprites-synth (-> dSprites npz), "
                                "mpi3d-synth (-> mpi3d_toy.npz) or cars3d-synth (-> a cars/ folder of .mat files)")
    q.add_argument("file", help="output file (for cars3d-synth: a new folder, e.g. DATA_ROOT/cars)")
    q.add_argument("--factor-sizes", default=None, metavar="N,N,...",
                   help="keep only the first N values of each factor (small test files)")
    q.add_argument("--no-progress", action="store_true", help="no progress bar")
    _root_arg(q)
    q.set_defaults(func=cmd_export)


def cmd_list(args: argparse.Namespace) -> int:
    from fdae.data import dataset_info, list_datasets, locate
    from fdae.data.files import resolve_root

    root = resolve_root(args.data_root)
    print(f"data root: {root if root else '(none: pass --data-root or set FDAE_DATA_ROOT)'}")
    print(f"{'name':<16} {'kind':<11} {'images':>10}  {'factor sizes':<26} status")
    for name in list_datasets():
        info = dataset_info(name)
        sizes = "x".join(map(str, info.factor_sizes))
        n = int(np.prod(info.factor_sizes))
        if info.procedural:
            kind, status = "procedural", f"built in ({info.summary})"
        else:
            found = locate(name, root)
            kind = "file"
            status = f"found: {found}" if found else f"missing: {info.files[0]} (from {info.published})"
        print(f"{name:<16} {kind:<11} {n:>10,}  {sizes:<26} {status}")
    _list_presets(root)
    return 0


def _list_presets(root) -> None:
    """The packaged presets with what each trains: the dataset (and whether its file is
    here), N, the U-Net and the schedule, so a user picks one by name."""
    from fdae.config import list_presets, load_config
    from fdae.data import dataset_info, locate

    print("\npresets (fdae train --config NAME; fdae demo --config NAME):")
    print(f"  {'name':<30} {'method':<12} {'dataset':<16} {'N':>2}  {'U-Net':<6} {'batch x steps':<14} data")
    for name in list_presets():
        cfg = load_config(name)
        data = cfg.data.name
        if dataset_info(data).procedural:
            where = "procedural"
        else:
            where = "file found" if locate(data, root) else "file missing"
        n = str(getattr(cfg.method, "num_concepts", "-"))
        unet = cfg.unet.preset if "unet" in type(cfg.method).SECTIONS else "-"
        schedule = f"{cfg.train.batch_size} x {cfg.train.steps}"
        print(f"  {name:<30} {cfg.method.name:<12} {data:<16} {n:>2}  {unet:<6} {schedule:<14} {where}")


def cmd_preview(args: argparse.Namespace) -> int:
    from fdae.data import get_dataset
    from fdae.data.preview import preview_image

    if args.columns < 2:
        raise FdaeError("--columns must be at least 2.")
    out = Path(args.out)
    require_output_file(out, "--out", (".png", ".jpg", ".jpeg", ".webp"))
    if not out.parent.exists():
        raise FdaeError(f"output folder '{out.parent}' does not exist; create it first.")
    ds = get_dataset(args.name, args.data_root)
    preview_image(ds, columns=args.columns, seed=args.seed).save(out)
    what = "traversal grid" if getattr(ds, "factor_sizes", None) is not None else "example images"
    print(f"wrote {out}: {what} of {ds.describe()}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from fdae.data.export import export

    limit = None
    if args.factor_sizes:
        try:
            limit = tuple(int(x) for x in args.factor_sizes.split(","))
        except ValueError:
            raise FdaeError(f"--factor-sizes must be comma-separated integers, got '{args.factor_sizes}'.") from None
    from fdae.data.export import FOLDER_EXPORTS
    from fdae.errors import require_output_dir

    if args.name in FOLDER_EXPORTS:
        require_output_dir(Path(args.file).parent, "export to")
    else:
        require_output_file(args.file, "export to")
    path = export(args.name, args.file, limit_sizes=limit, progress=not args.no_progress)
    print(f"wrote {path}: {args.name} (procedural stand-in) in the real file layout")
    return 0
