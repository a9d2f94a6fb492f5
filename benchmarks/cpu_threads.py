"""Seconds per training step of the demo preset under OpenMP thread settings, idle and busy.

Each setting runs in a fresh process (OpenMP reads its environment once, when torch loads
it). `--busy K` starts K spinning processes beside it, the state of a shared machine.
Ratios are against the default in the same run (BENCHMARKS.md, "CPU threads").

    .venv/bin/python benchmarks/cpu_threads.py --busy 0
    .venv/bin/python benchmarks/cpu_threads.py --busy 3
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import subprocess
import sys

STEP = r"""
import fdae  # first: it sets the OpenMP spin before torch loads OpenMP
import time, torch
from fdae.config import load_config
from fdae.methods import build_method
cfg = load_config("shapes3d-demo")
torch.manual_seed(0)
m = build_method(cfg, 3, cfg.data.image_size)
opt = torch.optim.Adam(m.parameters(), 1e-3)
x = torch.randn(cfg.train.batch_size, 3, cfg.data.image_size, cfg.data.image_size)
def step():
    opt.zero_grad(); m.loss(x)["loss"].backward(); opt.step()
for _ in range({warmup}): step()
t = time.perf_counter()
for _ in range({steps}): step()
print((time.perf_counter() - t) / {steps})
"""

# name -> environment; fdae's own default is the short spin it sets on import.
SETTINGS = {
    "libgomp default (spin 300k)": {"GOMP_SPINCOUNT": "300000"},
    "fdae default (spin 10k)": {},
    "passive wait": {"OMP_WAIT_POLICY": "PASSIVE"},
    "1 thread": {"OMP_NUM_THREADS": "1"},
}


def spin() -> None:
    while True:
        pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--busy", type=int, default=0, help="spinning processes to run beside each measurement")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    args = ap.parse_args()
    hogs = [mp.Process(target=spin, daemon=True) for _ in range(args.busy)]
    for h in hogs:
        h.start()
    try:
        results = {}
        for name, extra in SETTINGS.items():
            env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
            env.update(extra)
            out = subprocess.run([sys.executable, "-c", STEP.format(steps=args.steps, warmup=args.warmup)],
                                 env=env, capture_output=True, text=True, check=True)
            results[name] = float(out.stdout.strip().splitlines()[-1])
    finally:
        for h in hogs:
            h.terminate()
    base = results["libgomp default (spin 300k)"]
    print(f"busy processes beside it: {args.busy}; cores: {os.cpu_count()}\n")
    print("| setting | s/step | vs libgomp default |\n|---|---|---|")
    for name, sec in results.items():
        print(f"| {name} | {sec:.3f} | {base / sec:.2f}x |")


if __name__ == "__main__":
    main()
