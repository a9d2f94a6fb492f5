"""Time of one optimizer step over a model's parameters: the official RAdam (PyTorch's
foreach implementation) against fdae's FusedRAdam and PyTorch's fused Adam/AdamW.

    PYTHONPATH=src python3 benchmarks/optimizer_step.py --preset paper [--device cuda]

The parameters are those of the FDAE method built from the preset shapes3d-<preset> (paper: shapes3d-synth-paper)
(paper: 296.3 M in 400+ tensors), with random gradients; every optimizer is stepped
past RAdam's first, un-rectified steps before timing. Prints ms per step and the ratio
to foreach RAdam measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from fdae.config import load_config  # noqa: E402
from fdae.methods import build_method  # noqa: E402
from fdae.train.fused_radam import FusedRAdam  # noqa: E402


def make(name: str, params):
    if name == "radam-foreach":
        return torch.optim.RAdam(params, lr=1e-4, foreach=True)
    if name == "fused-radam":
        return FusedRAdam(params, lr=1e-4)
    if name == "adam-fused":
        return torch.optim.Adam(params, lr=1e-4, fused=True)
    if name == "adamw-fused":
        return torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0, fused=True)
    raise SystemExit(f"unknown optimizer {name}")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_step(name: str, params, device: torch.device, steps: int, warmup: int) -> float:
    opt = make(name, params)
    for _ in range(warmup):
        opt.step()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        opt.step()
    sync(device)
    dt = (time.perf_counter() - t0) / steps
    del opt
    return dt


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="paper", choices=("tiny", "fast", "paper"))
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=8, help="steps before timing (RAdam rectifies from step 6)")
    ap.add_argument("--optimizers", default="radam-foreach,fused-radam,adam-fused")
    ap.add_argument("--out", default=None, help="also write the results as JSON here")
    args = ap.parse_args()

    device = torch.device(args.device)
    torch.manual_seed(0)
    preset = {"paper": "shapes3d-synth-paper"}.get(args.preset, f"shapes3d-{args.preset}")
    cfg = load_config(preset, [f"train.device={args.device}"])
    params = [p for p in build_method(cfg).to(device).parameters()]
    for p in params:
        p.grad = torch.randn_like(p)
    n = sum(p.numel() for p in params)
    print(f"{args.preset}: {n / 1e6:.1f} M parameters in {len(params)} tensors on {device} "
          f"(torch {torch.__version__}, {torch.get_num_threads()} threads)", flush=True)
    rows = []
    base = None
    for name in args.optimizers.split(","):
        dt = time_step(name, params, device, args.steps, args.warmup)
        base = dt if name == "radam-foreach" else base
        rows.append({"optimizer": name, "ms_per_step": dt * 1e3})
        print(f"{name:14s} {dt * 1e3:9.2f} ms/step" + (f"   {base / dt:5.2f}x foreach RAdam" if base else ""),
              flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps({"preset": args.preset, "device": str(device), "params": n,
                                              "torch": torch.__version__, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
