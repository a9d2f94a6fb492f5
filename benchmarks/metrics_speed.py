"""Speed of the standard metric suite (disentanglement_lib protocol sizes), excluding encoding.

A 10-dim representation of the 6 Shapes3D factors (sizes 10, 10, 10, 8, 4, 15):
6 dims = factor / (size - 1) + N(0, 0.05^2), 4 dims pure noise. Array-level metrics get
10,000 training and 5,000 test samples; the FactorVAE / BetaVAE scores run at their
reference sizes (10,000 variance samples, 10,000 + 5,000 votes of 64) on a dataset whose
"images" cost nothing to make and to encode, so what is timed is the metric itself.

    .venv/bin/python benchmarks/metrics_speed.py            # all metrics, all cores
    .venv/bin/python benchmarks/metrics_speed.py --jobs 1   # serial classifiers

Reference (REFERENCE.md §5, disentanglement_lib on the same sizes, 2 CPU cores):
DCI 152.7 s, explicitness 1.5 s, SAP 0.5 s, MIG 0.2 s, modularity 0.1 s.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch

from fdae.metrics import beta_vae_score, dci, factor_vae_score, mig, modularity_explicitness, sap

SIZES = (10, 10, 10, 8, 4, 15)
DLIB_SECONDS = {"dci": 152.7, "modularity_explicitness": 1.6, "sap": 0.5, "mig": 0.2}


class CheapData:
    """Observations are the factors themselves (a 1x1 'image' per factor channel)."""

    factor_names = ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation")
    factor_sizes = SIZES

    def sample_factors(self, n, random_state):
        f = np.zeros((n, len(SIZES)), dtype=np.int64)
        for j, s in enumerate(SIZES):
            f[:, j] = random_state.randint(s, size=n)
        return f

    def sample_observations_from_factors(self, factors, random_state):
        return (factors / (np.array(SIZES) - 1.0)).astype(np.float32)[:, None, None, :]


def make_encoder(seed=0):
    g = torch.Generator().manual_seed(seed)

    def encode(images):  # (n, 6, 1, 1) in [-1, 1]
        f = (images[:, :, 0, 0] + 1.0) / 2.0
        return torch.cat([f + 0.05 * torch.randn(f.shape, generator=g), torch.randn(f.shape[0], 4, generator=g)], 1)

    return encode


def codes_and_factors(n, rs):
    f = np.stack([rs.randint(s, size=n) for s in SIZES], axis=1)
    c = np.concatenate([f / (np.array(SIZES) - 1.0) + 0.05 * rs.randn(n, 6), rs.randn(n, 4)], axis=1)
    return c.astype(np.float32), f


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--num-train", type=int, default=10000)
    ap.add_argument("--num-test", type=int, default=5000)
    ap.add_argument("--jobs", type=int, default=None, help="classifier processes/threads (default: all cores)")
    ap.add_argument("--skip-votes", action="store_true", help="only the array-level metrics")
    args = ap.parse_args()

    rs = np.random.RandomState(0)
    ctr, ftr = codes_and_factors(args.num_train, rs)
    cte, fte = codes_and_factors(args.num_test, rs)
    rows = []

    def timed(name, fn):
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        s, cpu = time.perf_counter() - t, time.process_time() - c
        rows.append((name, s, cpu, out))
        print(f"{name:24s} {s:8.2f} s wall {cpu:8.2f} s cpu", flush=True)
        return out

    timed("dci", lambda: dci(ctr, ftr, cte, fte, random_state=0, n_jobs=args.jobs)["disentanglement"])
    timed("mig", lambda: mig(ctr, ftr)["mig"])
    timed("sap", lambda: sap(ctr, ftr, cte, fte, n_jobs=args.jobs)["sap"])
    timed("modularity_explicitness", lambda: modularity_explicitness(ctr, ftr, cte, fte, n_jobs=args.jobs)["modularity"])
    if not args.skip_votes:
        ds = CheapData()
        timed("factor_vae_score", lambda: factor_vae_score(ds, make_encoder(), 0)["eval_accuracy"])
        timed("beta_vae_score", lambda: beta_vae_score(ds, make_encoder(), 0)["eval_accuracy"])

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print()
    print(f"# {args.num_train} train / {args.num_test} test, 10-dim codes, 6 factors; {cores} cores; "
          f"{platform.processor() or platform.machine()}; load avg {os.getloadavg()[0]:.1f}")
    print("| metric | fdae wall (s) | fdae CPU (s, all threads) | disentanglement_lib wall (s) | score |")
    print("|---|---|---|---|---|")
    total = total_cpu = 0.0
    for name, s, cpu, out in rows:
        total += s
        total_cpu += cpu
        ref = DLIB_SECONDS.get(name)
        print(f"| {name} | {s:.2f} | {cpu:.2f} | {ref if ref else '-'} | {out:.3f} |")
    print(f"| total | {total:.2f} | {total_cpu:.2f} | | |")


if __name__ == "__main__":
    main()
