"""`fdae navigate RUN_DIR`: find K directions in a trained run's code space without labels
(latent navigation, Voynov & Babenko 2020; `fdae.navigation`), save them to
RUN_DIR/navigation.pt and draw them to RUN_DIR/figures/navigation.png (where `fdae viz`
puts its figures; `fdae viz` redraws it while navigation.pt exists).

    fdae navigate runs/diffae-tiny-... --directions 10 --steps 1000
"""

from __future__ import annotations

import argparse
from dataclasses import asdict

from fdae.errors import FdaeError, require_output_dir
from fdae.navigation import FIGURE, NavigationConfig


def register(sub: argparse._SubParsersAction) -> None:
    d = NavigationConfig()
    p = sub.add_parser("navigate", help="find interpretable directions in a trained run's codes without labels",
                       description="Train a navigator (K directions and a CNN that recognises them from image "
                                   "pairs) on a frozen trained run (a diffusion autoencoder or a VAE), save it to "
                                   "RUN_DIR/navigation.pt and draw RUN_DIR/figures/navigation.png.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory written by `fdae train`")
    p.add_argument("--directions", type=int, default=d.directions, help=f"K (default {d.directions})")
    p.add_argument("--steps", type=int, default=d.steps, help=f"training steps (default {d.steps})")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help=f"default {d.batch_size}")
    p.add_argument("--lr", type=float, default=d.lr, help=f"Adam learning rate (default {d.lr:g})")
    p.add_argument("--shift-scale", type=float, default=d.shift_scale,
                   help=f"largest shift, in the codes' mean std (default {d.shift_scale:g})")
    p.add_argument("--sigma", type=float, default=d.sigma,
                   help=f"noise level of the diffusion renderer (default {d.sigma:g})")
    p.add_argument("--sample-steps", type=int, default=None,
                   help="Heun sampler steps of the figure (default: config edm.sample_steps)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--no-ema", action="store_true", help="use the raw weights, not the EMA")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fdae.commands.viz import sampler_text
    from fdae.navigation import Renderer, final_accuracy, save_navigation, train_navigation, write_navigation_figure
    from fdae.train.checkpoint import load_run, resolve_checkpoint
    from fdae.train.distributed import resolve_device

    cfg = NavigationConfig(directions=args.directions, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                           seed=args.seed, sigma=args.sigma, shift_scale=args.shift_scale)
    cfg.check()
    if args.sample_steps is not None and args.sample_steps < 1:
        raise FdaeError("--sample-steps must be at least 1 (Heun sampler steps)")
    device = resolve_device(args.device, source="--device")
    run_dir, _ = resolve_checkpoint(args.run_dir)
    require_output_dir(run_dir / "figures", "figures folder")
    loaded = load_run(args.run_dir, device=device, use_ema=not args.no_ema)
    method = loaded.method
    Renderer(method, cfg.sigma)  # refuses a method that cannot be navigated, before any work
    print(f"navigating {run_dir} ({loaded.cfg.method.name} at step {loaded.step}"
          f"{', EMA weights' if loaded.used_ema else ''}; dataset {loaded.dataset.name}): {cfg.directions} "
          f"directions, {cfg.steps} steps of {cfg.batch_size}")

    def log(step: int, terms: dict[str, float]) -> None:
        print(f"  step {step:>6d}  loss {terms['loss']:.4f}  direction accuracy {terms['accuracy']:.3f}  "
              f"shift error {terms['shift_error']:.3f}", flush=True)

    options = {k: v for k, v in asdict(cfg).items()
               if k not in ("directions", "steps", "batch_size", "lr", "seed")}
    navigator, history = train_navigation(method, loaded.dataset, cfg.directions, cfg.steps, cfg.batch_size, cfg.lr,
                                          cfg.seed, device=device, log=log, log_every=max(1, cfg.steps // 10),
                                          **options)
    accuracy = final_accuracy(history)
    tail = history["shift_error"][-max(1, len(history["shift_error"]) // 10):]
    meta = {"accuracy": accuracy, "shift_error": sum(tail) / len(tail), "run_step": loaded.step,
            "method": loaded.cfg.method.name, "dataset": loaded.dataset.name, "used_ema": loaded.used_ema}
    path = save_navigation(run_dir, navigator, meta)
    navigator.meta = {**navigator.meta, **meta}
    navigator.eval()
    images = loaded.dataset.example_images(2, args.seed, device)
    figure = write_navigation_figure(method, navigator, images, run_dir / "figures" / FIGURE, args.sample_steps,
                                     args.seed, sampler_text(method, args.sample_steps))
    print(f"direction accuracy {accuracy:.3f} over the last tenth of the steps (chance {1 / cfg.directions:.3f}); "
          f"shift error {meta['shift_error']:.3f} of s")
    print(f"wrote {path}")
    print(f"wrote {figure}")
    return 0
