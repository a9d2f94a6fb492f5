"""Images/s of one training step for each preset, device, precision and compile setting.

    python benchmarks/train_speed.py                       # CPU: tiny, fast, paper presets
    PYTHONPATH=src python3 benchmarks/train_speed.py --device cuda --presets paper,fast \
        --variants fp32,bf16,bf16+compile --batch 32

Each row: the FDAE method built from the preset's config (U-Net preset plus CMFNet),
the trainer's optimizer (`fdae.train.optim.build_optimizer`) and step
(`fdae.train.fast_step.make_train_step`), batches rendered by `shapes3d-synth` on the
device; parameter count and forward+backward FLOPs per image from torch's flop counter.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from fdae.config import load_config  # noqa: E402
from fdae.data import get_dataset  # noqa: E402
from fdae.methods import build_method  # noqa: E402
from fdae.train.fast_step import make_train_step  # noqa: E402
from fdae.train.flops import training_flops_per_image  # noqa: E402
from fdae.train.optim import build_optimizer  # noqa: E402

PRESET_CONFIGS = {"tiny": "shapes3d-tiny", "fast": "shapes3d-fast", "paper": "shapes3d-synth-paper"}  # packaged presets


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench(preset: str, device: torch.device, batch: int, variant: str, steps: int, warmup: int) -> dict:
    parts = set(variant.split("+"))
    cfg = load_config(PRESET_CONFIGS[preset])
    torch.manual_seed(0)
    model = build_method(cfg).to(device)
    opt = build_optimizer(model.parameters(), cfg.optim, device)
    step = make_train_step(model, opt, precision="bf16" if "bf16" in parts else "fp32",
                           compile="compile" in parts)
    ds = get_dataset("shapes3d-synth")
    gen = torch.Generator(device=device).manual_seed(0)
    noise = torch.Generator(device=device).manual_seed(1)
    for _ in range(warmup):
        step(ds.sample_batch(batch, gen, device)[0], noise)
    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = step(ds.sample_batch(batch, gen, device)[0], noise)
    sync(device)
    sec = time.perf_counter() - t0
    return {"preset": preset, "device": str(device), "batch": batch, "variant": variant,
            "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
            "gflop_per_image": training_flops_per_image(cfg) / 1e9,
            "img_per_s": steps * batch / sec, "s_per_step": sec / steps, "loss": float(loss)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--presets", default="tiny,fast,paper")
    ap.add_argument("--variants", default="fp32")
    ap.add_argument("--batch", type=int, default=None, help="default: 16 tiny, 4 fast, 1 paper on CPU; 32 on GPU")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    args = ap.parse_args()
    device = torch.device(args.device)
    cpu_batch = {"tiny": 16, "fast": 4, "paper": 1}
    print(f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}, {time.strftime('%Y-%m-%d')}")
    print("| preset | device | batch | variant | params (M) | GFLOP/image (fwd+bwd) | images/s | s/step |")
    print("|---|---|---|---|---|---|---|---|")
    for preset in args.presets.split(","):
        for variant in args.variants.split(","):
            batch = args.batch or (cpu_batch[preset] if device.type == "cpu" else 32)
            r = bench(preset, device, batch, variant, args.steps, args.warmup)
            print(f"| {preset} | {r['device']} | {batch} | {variant} | {r['params_m']:.1f} | "
                  f"{r['gflop_per_image']:.1f} | {r['img_per_s']:.2f} | {r['s_per_step']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
