"""`fdae sample RUN_DIR`: a grid of (input | reconstruction) pairs (diffusion methods
decode with Heun's sampler, VAEs with their decoder's Bernoulli means).

    fdae sample runs/diffae-tiny-... --steps 40 --n 8 --out recon.png
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "sample",
        help="write a grid of input | reconstruction pairs of a trained run",
        description="Encode dataset images with a trained run and decode them (diffusion methods: the EDM "
                    "Heun sampler; VAEs: the decoder's Bernoulli means); writes a PNG grid of "
                    "(input | reconstruction) pairs.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory (or one of its checkpoint files)")
    p.add_argument("--steps", type=int, default=40, help="Heun sampler steps of diffusion methods (default 40)")
    p.add_argument("--n", type=int, default=8, help="number of images (default 8)")
    p.add_argument("--out", metavar="FILE.png", help="output (default RUN_DIR/samples/reconstructions_step_N.png)")
    p.add_argument("--seed", type=int, default=0, help="seed of the images and the sampler noise")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--no-ema", action="store_true", help="use the raw weights even if the run has an EMA")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from fdae.errors import FdaeError, require_output_file
    from fdae.train.checkpoint import load_run
    from fdae.train.distributed import resolve_device
    from fdae.viz.grids import pair_grid, save_png
    from fdae.train.rng import make_generator

    if args.steps < 1 or args.n < 1:
        raise FdaeError("--steps and --n must be at least 1")
    device = resolve_device(args.device, source="--device")
    if args.out:
        require_output_file(args.out, "--out", (".png",))
    loaded = load_run(args.run_dir, device=device, use_ema=not args.no_ema)
    out = Path(args.out) if args.out else loaded.run_dir / "samples" / f"reconstructions_step_{loaded.step:08d}.png"
    images, _ = loaded.dataset.sample_batch(args.n, make_generator(args.seed, 0, 5, device), device)
    recon = loaded.method.reconstruct(images, steps=args.steps, generator=make_generator(args.seed, 1, 5, device))
    save_png(pair_grid(images, recon), out)
    mse = torch.mean((recon.float() - images.float()) ** 2).item()
    print(f"dataset {loaded.dataset.name}; {loaded.cfg.method.name} at step {loaded.step}"
          f"{' (EMA weights)' if loaded.used_ema else ''}; {args.n} images"
          f"{f', {args.steps} Heun steps' if hasattr(loaded.method, 'edm_cfg') else ''}; "
          f"pixel MSE {mse:.4f}")
    print(f"wrote {out} (each pair: input | reconstruction)")
    return 0
