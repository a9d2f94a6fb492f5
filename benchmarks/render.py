"""Images/s of the procedural datasets' `sample_batch` per device.

    .venv/bin/python benchmarks/render.py [--devices cpu cuda] [--seconds 3]

Prints one line per (dataset, device, batch): the one-time table build (ray cast of the
480 Shapes3D views / drawing the 720 sprite stamps, done once per process on CPU), then
steady-state images/s of `sample_batch` (random factors -> images in [-1, 1] on the
device, synchronised), which is what a trainer calls each step.

`mpi3d-synth` and `cars3d-synth` ray cast their rows on first use: the script first
times a cold batch of 64 (rows rendered as they are met, what the first steps of a run
pay), then renders every row (the cost a complete pass pays once; saved to the cache
folder afterwards, so `--cache` off by default points $FDAE_CACHE_DIR at a fresh
temporary folder to time it from nothing), then the warm rate.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import tempfile
import time

import torch

from fdae.data import dsprites_synth, get_dataset, shapes3d_synth
from fdae.data.base import single_thread


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def rate(ds, device: str, batch: int, seconds: float) -> float:
    gen = torch.Generator(device=device).manual_seed(0)
    for _ in range(3):
        ds.sample_batch(batch, gen, device)
    sync(device)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        ds.sample_batch(batch, gen, device)
        n += batch
    sync(device)
    return n / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    p.add_argument("--devices", nargs="+", default=default)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--datasets", nargs="+", default=["shapes3d-synth", "dsprites-synth", "mpi3d-synth",
                                                      "cars3d-synth"])
    p.add_argument("--cache", action="store_true", help="use the existing cache folder (default: a fresh one)")
    args = p.parse_args()
    if not args.cache:
        os.environ["FDAE_CACHE_DIR"] = tempfile.mkdtemp(prefix="fdae-render-bench-")
    dev_names = {d: (torch.cuda.get_device_name(0) if d.startswith("cuda") else platform.processor() or "cpu")
                 for d in args.devices}
    print(f"# {datetime.date.today()} torch {torch.__version__} threads {torch.get_num_threads()} "
          f"devices {dev_names}")
    t = time.perf_counter()
    with single_thread():
        shapes3d_synth.build_geometry()
    print(f"shapes3d-synth table build (CPU, once per process): {time.perf_counter() - t:.2f} s")
    t = time.perf_counter()
    with single_thread():
        dsprites_synth.build_stamps()
    print(f"dsprites-synth stamp build (CPU, once per process): {time.perf_counter() - t:.2f} s")
    for name in ("mpi3d-synth", "cars3d-synth"):
        if name not in args.datasets:
            continue
        ds = get_dataset(name)
        f = ds.sample_factors(64, __import__("numpy").random.RandomState(0))
        t = time.perf_counter()
        ds.images_uint8(f)
        cold = time.perf_counter() - t
        t = time.perf_counter()
        ds.render_all()
        print(f"{name}: cold batch of 64 {cold:.2f} s ({64 / cold:,.0f} images/s); every row "
              f"(CPU, one thread, once) {time.perf_counter() - t:.1f} s", flush=True)
    print(f"{'dataset':<16} {'device':<6} {'batch':>6} {'images/s':>12}")
    for name in args.datasets:
        ds = get_dataset(name)
        for device in args.devices:
            batches = (64, 256, 1024) if device == "cpu" else (256, 4096, 16384)
            for batch in batches:
                print(f"{name:<16} {device:<6} {batch:>6} {rate(ds, device, batch, args.seconds):>12,.0f}", flush=True)


if __name__ == "__main__":
    main()
