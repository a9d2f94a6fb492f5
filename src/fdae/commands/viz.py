"""`fdae viz RUN_DIR --out DIR`: the figures of a trained run: reconstructions and latent
traversals for every method, masks and code swaps for FDAE (`Method.figures`), and the
directions `fdae navigate` found when RUN_DIR/navigation.pt exists."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from fdae.errors import FdaeError, require_output_dir
from fdae.train.distributed import resolve_device


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("viz", help="write figures of a trained run: traversals, reconstructions, masks, code swaps")
    p.add_argument("run_dir", help="a run directory written by `fdae train`")
    p.add_argument("--out", default=None, help="output folder (default: RUN_DIR/figures)")
    p.add_argument("--n", type=int, default=6, help="images per figure")
    p.add_argument("--steps", type=int, default=None, help="Heun sampler steps (default: config edm.sample_steps)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--data-root", default=None)
    p.add_argument("--no-ema", action="store_true", help="use the raw weights, not the EMA")
    p.add_argument("--figures", default=None, metavar="NAMES",
                   help="comma-separated figures to draw (default: all of the method's, plus 'navigation' when "
                        "RUN_DIR/navigation.pt exists)")
    p.set_defaults(func=run)


def sampler_text(model, steps: int | None = None) -> str:
    """How a figure's cells are decoded, for its caption."""
    edm_cfg = getattr(model, "edm_cfg", None)
    sampler = (f"Heun, {steps or edm_cfg.sample_steps} steps, one shared noise for every cell" if edm_cfg
               else "the decoder's Bernoulli means")
    if getattr(model, "sampler_note", None):
        method_steps = getattr(model.cfg, "sample_steps", None)
        sampler = f"{model.sampler_note}; {steps or method_steps} steps"
    return sampler


def write_figures(model, dataset, out: Path, n: int = 6, steps: int | None = None, seed: int = 0,
                  device: torch.device | str = "cpu", navigator=None,
                  only: set[str] | None = None) -> dict[str, Path]:
    """Every figure for `model` on 2n images of `dataset` drawn with RandomState(seed)
    (`dataset.example_images`: factors for ground-truth datasets, rows for image folders),
    each titled and with its rows and columns labelled; the navigation figure too when a
    `navigator` (`fdae.navigation`) is given. `only`: these figure names alone."""
    from fdae.viz.figures import (concept_swap_figure, mask_figure, reconstruction_figure, sample_figure,
                                  swap_grid, traversal_figure, unit_swap_figure)
    from fdae.viz.grids import labelled, save_png

    images = dataset.example_images(2 * n, seed, device)
    first, second = images[:n], images[n:]
    size = images.shape[-1]
    scale = max(2, 128 // size)  # cells of at least 128 px, so 32 px images stay legible
    sampler = sampler_text(model, steps)
    figures = [f for f in model.figures if only is None or f in only]
    written = {}
    if "samples" in figures:  # a model without codes (DisDiff's stage 1): what it generates
        method_steps = getattr(model.cfg, "sample_steps", None)
        grid = sample_figure(model, 2 * n, tuple(images.shape[1:]), steps, seed)
        written["samples"] = save_png(labelled(
            grid, size, [f"Samples: unconditional DDIM, {steps or method_steps} steps, seed {seed}"], scale=scale),
            out / "samples.png")
    if "reconstructions" in figures:
        rec = reconstruction_figure(model, first, steps, seed)
        pairs = (rec.shape[1] - 2) // (2 * (size + 2))
        written["reconstructions"] = save_png(labelled(
            rec, size, [f"Reconstructions: each input and the image decoded from its codes ({sampler})"],
            col_labels=["input", "decoded"] * pairs, scale=scale), out / "reconstructions.png")
    if "traversals" in figures:
        sample = dataset.example_images(256, seed + 1, device)
        grid, rows, cols = traversal_figure(model, first[:min(n, 3)], sample, steps, seed)
        written["traversals"] = save_png(labelled(
            grid, size, ["Latent traversals: one row per axis of the representation, decoded across its range",
                         f"{model.traversal_note}; sample: {len(sample)} images ({sampler})"],
            col_labels=cols, row_labels=rows, scale=scale), out / "traversals.png")
    if "unit_swaps" in figures:
        names = [name for name, _ in model.groups]
        written["unit_swaps"] = save_png(labelled(
            unit_swap_figure(model, first, second, steps, seed), size,
            ["Per-unit swaps: column 'unit k' = the image with unit k's code replaced by the donor's",
             f"the other units keep the image's own codes ({sampler})"],
            col_labels=["image", "donor", *names], scale=scale), out / "unit_swaps.png")
    if "masks" in figures:
        concepts = model.cfg.num_concepts
        written["masks"] = save_png(labelled(
            mask_figure(model, first), size,
            ["Masks: where each concept's content is painted (white = 1; masks sum to 1 per pixel)",
             "one row per image; 'concepts' colours each pixel by its concepts' masks"],
            col_labels=["input", *[f"mask {k + 1}" for k in range(concepts)], "concepts", "overlay"],
            scale=scale), out / "masks.png")
    if "swap_grid" in figures:
        written["swap_grid"] = save_png(labelled(
            swap_grid(model, first, second, steps, seed), size,
            ["Swap grid: cell (row i, column j) = CONTENT codes of row image i + MASK codes of column image j",
             f"content codes should carry the colours (constant along a row), masks the shapes ({sampler})"],
            col_labels=["", *[f"masks of {chr(65 + j)}" for j in range(n)]],
            row_labels=["", *[f"content of {i + 1}" for i in range(n)]], scale=scale), out / "swap_grid.png")
    if "concept_swaps" in figures:
        concepts = model.cfg.num_concepts
        for kind in ("content", "mask"):
            fig = concept_swap_figure(model, first, second, kind, steps, seed)
            written[f"swap_{kind}"] = save_png(labelled(
                fig, size,
                [f"Per-concept {kind} swaps: column 'concept k' = the image with concept k's {kind} code",
                 "replaced by the donor's; the other concepts keep the image's own codes"],
                col_labels=["image", "donor", *[f"concept {k + 1}" for k in range(concepts)]], scale=scale),
                out / f"concept_swaps_{kind}.png")
    if navigator is not None and (only is None or "navigation" in only):
        from fdae.navigation import FIGURE, write_navigation_figure

        written["navigation"] = write_navigation_figure(model, navigator, first[:min(n, 2)], out / FIGURE, steps,
                                                        seed, sampler)
    return written


def run(args: argparse.Namespace) -> int:
    from fdae.data import get_dataset
    from fdae.navigation import load_navigation, navigation_path
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
    only = {name.strip() for name in args.figures.split(",") if name.strip()} if args.figures is not None else None
    if only is not None and not only:
        raise FdaeError("--figures names no figure; give e.g. --figures reconstructions,traversals")
    if only is not None and "navigation" in only and not navigation_path(run_dir).is_file():
        raise FdaeError(f"{run_dir} has no navigation.pt, so there are no directions to draw; run "
                        f"`fdae navigate {run_dir}` first")
    loaded = load_run(args.run_dir, device=device, use_ema=not args.no_ema, dataset=dataset)
    if only is not None:
        known = [*loaded.method.figures, "navigation"]
        unknown = sorted(only - set(known))
        if unknown:
            raise FdaeError(f"--figures names {', '.join(unknown)}, which {loaded.cfg.method.name} does not draw; "
                            f"choose among {', '.join(known)}")
    navigator = load_navigation(run_dir, device) if only is None or "navigation" in only else None
    written = write_figures(loaded.method, loaded.dataset, out, args.n, args.steps, args.seed, device, navigator,
                            only)
    print(f"figures of {run_dir} (step {loaded.step}, dataset {loaded.dataset.name}):")
    for name, path in written.items():
        print(f"  {name:16s} {path}")
    return 0
