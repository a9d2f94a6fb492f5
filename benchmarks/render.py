"""Images/s of the procedural datasets' `sample_batch` per device.

    .venv/bin/python benchmarks/render.py [--devices cpu cuda] [--seconds 3]

Prints one line per (dataset, device, batch): the one-time table build (ray cast of the
480 Shapes3D views / drawing the 720 sprite stamps, done once per process on CPU), then
steady-state images/s of `sample_batch` (random factors -> images in [-1, 1] on the
device, synchronised), which is what a trainer calls each step.
"""

from __future__ import annotations

import argparse
import datetime
import platform
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
    args = p.parse_args()
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
    print(f"{'dataset':<16} {'device':<6} {'batch':>6} {'images/s':>12}")
    for name in ("shapes3d-synth", "dsprites-synth"):
        ds = get_dataset(name)
        for device in args.devices:
            batches = (64, 256, 1024) if device == "cpu" else (256, 4096, 16384)
            for batch in batches:
                print(f"{name:<16} {device:<6} {batch:>6} {rate(ds, device, batch, args.seconds):>12,.0f}", flush=True)


if __name__ == "__main__":
    main()
