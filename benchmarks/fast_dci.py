"""Fast DCI (histogram boosting) against the exact DCI on trained representations.

    .venv/bin/python benchmarks/fast_dci.py runs/studies/cpu-small [--num-train 10000 --num-test 5000]

For every finished cell of a study (or any run folders given), draws the standard
protocol's train and test sets once (disentanglement_lib's sampling, seed 0), then
computes DCI both ways on the same codes, one thread each, and prints D, C, I and the
seconds of each, then the worst |D_fast - D_exact| and the median speed-up.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from fdae.metrics.dci import dci
from fdae.metrics.sampling import as_encoder, sample_observations
from fdae.train.checkpoint import load_run


def runs_of(paths: list[str]) -> list[Path]:
    out = []
    for p in map(Path, paths):
        cells = p / "cells"
        if cells.is_dir():
            out += sorted(c / "run" for c in cells.iterdir() if (c / "results.json").is_file())
        else:
            out.append(p)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("paths", nargs="+", help="study output folders (their finished cells) or run folders")
    ap.add_argument("--num-train", type=int, default=1000)
    ap.add_argument("--num-test", type=int, default=500)
    ap.add_argument("--every", type=int, default=1, help="use every k-th run only")
    ap.add_argument("--match", default="", help="only runs whose cell name contains this text")
    ap.add_argument("--out", default=None, help="JSON file for the rows")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    print(f"sizes {args.num_train} / {args.num_test}; one thread\n"
          "| run | codes | D exact | D fast | abs diff | C exact | C fast | exact s | fast s | speed-up |\n"
          "|---|---|---|---|---|---|---|---|---|---|", flush=True)
    runs = [r for r in runs_of(args.paths) if args.match in str(r)]
    for run in runs[:: args.every]:
        loaded = load_run(run, device="cpu")
        enc = as_encoder(loaded.method.encode, "cpu")
        rs = np.random.RandomState(0)
        ctr, ftr = sample_observations(loaded.dataset, args.num_train, rs, enc)
        cte, fte = sample_observations(loaded.dataset, args.num_test, rs, enc)
        res = {}
        for mode in ("exact", "fast"):
            t = time.perf_counter()
            res[mode] = dci(ctr, ftr, cte, fte, random_state=0, n_jobs=1, mode=mode)
            res[mode]["seconds"] = time.perf_counter() - t
        e, f = res["exact"], res["fast"]
        row = {"run": str(run.parent.name if run.name == "run" else run), "codes": int(ctr.shape[1]),
               "d_exact": e["disentanglement"], "d_fast": f["disentanglement"],
               "c_exact": e["completeness"], "c_fast": f["completeness"],
               "i_exact": e["informativeness_test"], "i_fast": f["informativeness_test"],
               "exact_s": e["seconds"], "fast_s": f["seconds"]}
        rows.append(row)
        print(f"| {row['run']} | {row['codes']} | {row['d_exact']:.3f} | {row['d_fast']:.3f} | "
              f"{abs(row['d_exact'] - row['d_fast']):.3f} | {row['c_exact']:.3f} | {row['c_fast']:.3f} | "
              f"{row['exact_s']:.1f} | {row['fast_s']:.1f} | {row['exact_s'] / row['fast_s']:.1f}x |", flush=True)
    diffs = [abs(r["d_exact"] - r["d_fast"]) for r in rows]
    speed = [r["exact_s"] / r["fast_s"] for r in rows]
    print(f"\n{len(rows)} runs: max |D_fast - D_exact| {max(diffs):.3f}, mean {np.mean(diffs):.3f}; "
          f"median speed-up {np.median(speed):.1f}x (min {min(speed):.1f}x)")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
