"""`fdae train`: train a method from a YAML preset, or resume a run.

    fdae train --config diffae-tiny train.steps=500 optim.lr=2e-4
    fdae train --config shapes3d-fast --run-dir runs/fast
    fdae train --resume runs/fast                   # continue exactly where it stopped
    fdae train --resume runs/fast train.steps=20000 # ... and train longer
    fdae train --resume runs/fast --resume-previous # ... from the newest intact checkpoint
    torchrun --nproc_per_node=2 -m fdae train --config shapes3d-fast
"""

from __future__ import annotations

import argparse
import sys


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a method (config file + key=value overrides), or --resume a run",
        description="Train a method from a YAML config with key=value overrides, or resume a run "
                    "directory. Writes RUN_DIR/config.yaml, checkpoints/, metrics.jsonl.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  fdae train --config diffae-tiny train.steps=500\n"
               "  fdae train --resume runs/diffae-tiny-20240101-120000\n"
               "  torchrun --nproc_per_node=2 -m fdae train --config shapes3d-fast",
    )
    p.add_argument("--config", metavar="PRESET",
                   help="a preset by name (`fdae data list` shows them), e.g. diffae-tiny, or a YAML file")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="config overrides, e.g. train.steps=1000 optim.lr=2e-4")
    p.add_argument("--ablation", metavar="ROW", default=None,
                   help="a row of FDAE's ablation table: eg, cmfnet, cmfnet+cd, cmfnet+me, full")
    p.add_argument("--run-dir", metavar="DIR", help="where the run goes (default runs/NAME-TIMESTAMP)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the newest checkpoint of RUN_DIR")
    p.add_argument("--resume-previous", action="store_true",
                   help="with --resume: if the newest checkpoint fails its integrity check, continue from the "
                        "newest one that passes (the damaged file is kept as *.corrupt)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fdae.config import load_config
    from fdae.errors import FdaeError
    from fdae.methods.ablations import ablation_overrides
    from fdae.train.checkpoint import run_config
    from fdae.train.loop import train

    if args.resume_previous and not args.resume:
        raise FdaeError("--resume-previous goes with --resume RUN_DIR")
    if args.resume:
        if args.config or args.ablation:
            raise FdaeError("give either --config [--ablation] (a new run) or --resume RUN_DIR (the run's own config), not both")
        if args.run_dir and args.run_dir != args.resume:
            raise FdaeError("--resume RUN_DIR continues in RUN_DIR; drop --run-dir")
        cfg = run_config(args.resume, args.overrides)
        run_dir, resume = args.resume, True
    else:
        if not args.config:
            raise FdaeError("fdae train needs --config PRESET (e.g. diffae-tiny; `fdae data list` shows them) "
                            "or a YAML file, or --resume RUN_DIR")
        rows = ablation_overrides(args.ablation) if args.ablation else []
        cfg = load_config(args.config, [*rows, *args.overrides])
        if args.ablation:
            cfg.name = f"{cfg.name}-{args.ablation}"
        run_dir, resume = args.run_dir, False
    result = train(cfg, run_dir, resume=resume, progress=not args.no_progress,
                   resume_previous=args.resume_previous)
    import os

    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    if result.reason == "finished_before":
        print(f"run {result.run_dir} has already finished: its newest checkpoint is at step {result.step} and "
              f"train.steps is {cfg.train.steps}, so nothing was done and nothing changed. To train it longer, "
              f"`fdae train --resume {result.run_dir} train.steps={max(result.step, cfg.train.steps) * 2}`",
              file=sys.stderr)
        return 0
    loss = result.last_metrics.get("loss")
    text = f"{loss:.4f}" if isinstance(loss, float) else "n/a"
    print(f"run {result.run_dir}: step {result.step} ({result.reason}), last loss {text}, "
          f"{result.skipped_steps} skipped steps, {result.minutes:.1f} training min; "
          f"checkpoint {result.checkpoint}", file=sys.stderr)
    return 0
