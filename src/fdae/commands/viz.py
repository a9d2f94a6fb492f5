"""`fdae viz RUN_DIR --out DIR`: the figures of a trained run (masks, swaps, reconstructions)."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from fdae.errors import FdaeError, require_output_dir
from fdae.train.distributed import resolve_device


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("viz", help="write figures of a trained run: masks, code swaps, reconstructions")
    p.add_argument("run_dir", help="a run directory written by `fdae train`")
    p.add_argument("--out", default=None, help="output folder (default: RUN_DIR/figures)")
    p.add_argument("--n", type=int, default=6, help="images per figure")
    p.add_argument("--steps", type=int, default=None, help="Heun sampler steps (default: config edm.sample_steps)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--data-root", default=None)
    p.add_argument("--no-ema", action="store_true", help="use the raw weights, not the EMA")
    p.set_defaults(func=run)


def write_figures(model, dataset, out: Path, n: int = 6, steps: int | None = None, seed: int = 0,
                  device: torch.device | str = "cpu") -> dict[str, Path]:
    """Every figure for `model` on 2n images of `dataset` drawn with RandomState(seed)
    (`dataset.example_images`: factors for ground-truth datasets, rows for image folders)."""
    from fdae.methods.fdae import FDAE
    from fdae.viz.figures import concept_swap_figure, mask_figure, reconstruction_figure, swap_grid
    from fdae.viz.grids import save_png

    images = dataset.example_images(2 * n, seed, device)
    first, second = images[:n], images[n:]
    written = {"reconstructions": save_png(reconstruction_figure(model, first, steps, seed), out / "reconstructions.png", 2)}
    if isinstance(model, FDAE) and model.cfg.use_masks:
        written["masks"] = save_png(mask_figure(model, first), out / "masks.png", 2)
        written["swap_grid"] = save_png(swap_grid(model, first, second, steps, seed), out / "swap_grid.png", 2)
        for kind in ("content", "mask"):
            fig = concept_swap_figure(model, first, second, kind, steps, seed)
            written[f"swap_{kind}"] = save_png(fig, out / f"concept_swaps_{kind}.png", 2)
    return written


def run(args: argparse.Namespace) -> int:
    from fdae.data import get_dataset
    from fdae.train.checkpoint import load_run, resolve_checkpoint, run_config

    if args.n < 1:
        raise FdaeError("--n must be at least 1")
    if args.steps is not None and args.steps < 1:
        raise FdaeError("--steps must be at least 1 (Heun sampler steps)")
    device = resolve_device(args.device, source="--device")
    run_dir, _ = resolve_checkpoint(args.run_dir)
    out = Path(args.out) if args.out else run_dir / "figures"
    require_output_dir(out, "--out")
    dataset = None
    if args.data_root:
        cfg = run_config(run_dir)
        dataset = get_dataset(cfg.data.name, root=args.data_root, image_size=cfg.data.image_size)
    loaded = load_run(args.run_dir, device=device, use_ema=not args.no_ema, dataset=dataset)
    written = write_figures(loaded.method, loaded.dataset, out, args.n, args.steps, args.seed, device)
    print(f"figures of {run_dir} (step {loaded.step}, dataset {loaded.dataset.name}):")
    for name, path in written.items():
        print(f"  {name:16s} {path}")
    return 0
