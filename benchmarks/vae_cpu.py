"""disentanglement_lib's six VAEs on this CPU: a fixed number of steps each, then the
standard-protocol DCI, FactorVAE score and MIG, next to the untrained encoder's.

    python benchmarks/vae_cpu.py --jobs 2 --out vae_cpu

Each run is the packaged preset `<method>-<dataset>` (the study's networks, losses,
Adam 1e-4, batch 64) with `train.steps` set per dataset (`--steps DATASET=N`) and the
images box-filtered to `--image-size` 32 px (every layer kept, 4x cheaper than 64 px:
1,000 steps at 64 px scored below 3,000 at 32 px in the same time). AnnealedVAE's
capacity grows over a third of the steps (`method.iteration_threshold`), the study's
ratio (100,000 of 300,000). Runs go `--jobs` at a time, one thread each (steps/s are
measured so, beside the other job). The untrained encoder (the weights every run starts
from; the six methods share its seed and encoder) is scored once per dataset with the
same evaluation. Writes OUT/results.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

METHODS = ["beta-vae", "annealed-vae", "beta-tcvae", "factor-vae", "dip-vae-i", "dip-vae-ii"]
DATASETS = ["dsprites-synth", "shapes3d-synth"]
EVAL = {"num_train": 2000, "num_test": 1000, "num_votes_train": 300, "num_votes_eval": 200}


def _one_thread() -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)


def _scores(method, dataset) -> dict:
    from fdae.metrics import evaluate

    res = evaluate(dataset, method.encode, metrics=["dci", "factor_vae", "mig"], protocol="dlib", random_state=0,
                   groups=method.groups, device="cpu", **EVAL)
    m = res["metrics"]
    return {"dci": float(m["dci"]["disentanglement"]), "factor_vae": float(m["factor_vae"]["eval_accuracy"]),
            "mig": float(m["mig"]["mig"])}


def _overrides(method: str, steps: int, image_size: int) -> list[str]:
    extra = [f"method.iteration_threshold={max(1, steps // 3)}"] if method == "annealed-vae" else []
    return [f"train.steps={steps}", f"data.image_size={image_size}", "train.log_every=50", "train.ckpt_every=0",
            "train.image_every=0", "train.device=cpu", *extra]


def train_and_score(method: str, dataset: str, steps: int, image_size: int, out: str,
                    extra: tuple[str, ...] = ()) -> dict:
    _one_thread()
    from fdae.config import load_config
    from fdae.train.checkpoint import load_run
    from fdae.train.loop import train

    cfg = load_config(f"{method}-{dataset}", [*_overrides(method, steps, image_size), *extra])
    run_dir = Path(out) / f"{method}-{dataset}"
    t = time.perf_counter()
    result = train(cfg, run_dir, progress=False, tensorboard=False)
    train_s = time.perf_counter() - t
    loaded = load_run(run_dir)
    t = time.perf_counter()
    scores = _scores(loaded.method, loaded.dataset)
    last = result.last_metrics
    return {"method": method, "dataset": dataset, "steps": result.step, "train_seconds": round(train_s, 1),
            "steps_per_s": round(result.step / train_s, 2), "eval_seconds": round(time.perf_counter() - t, 1),
            "final": {k: last.get(k) for k in ("reconstruction", "kl", "regularizer")}, **scores}


def untrained(dataset: str, image_size: int) -> dict:
    _one_thread()
    from fdae.config import load_config
    from fdae.data import get_dataset
    from fdae.train.loop import initial_method

    cfg = load_config(f"beta-vae-{dataset}", _overrides("beta-vae", 1, image_size))
    ds = get_dataset(cfg.data.name, image_size=image_size)
    return {"method": "untrained", "dataset": dataset, **_scores(initial_method(cfg, ds), ds)}


def table(rows: list[dict]) -> str:
    lines = ["| method | dataset | steps | steps/s | DCI | FactorVAE | MIG |", "|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        sps = f"{r['steps_per_s']:.2f}" if "steps_per_s" in r else "-"
        lines.append(f"| {r['method']} | {r['dataset']} | {r.get('steps', 0)} | {sps} | {r['dci']:.3f} | "
                     f"{r['factor_vae']:.3f} | {r['mig']:.3f} |")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", nargs="+", default=["dsprites-synth=5000", "shapes3d-synth=5000"],
                   help="DATASET=STEPS for each dataset")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--methods", nargs="+", default=METHODS)
    p.add_argument("--datasets", nargs="+", default=DATASETS)
    p.add_argument("--out", default="vae_cpu")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="overrides for every run")
    args = p.parse_args()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    steps = {k: int(v) for k, v in (s.split("=") for s in args.steps)}
    start = time.perf_counter()
    with ProcessPoolExecutor(args.jobs) as pool:
        jobs = [pool.submit(train_and_score, m, d, steps[d], args.image_size, args.out, tuple(args.set))
                for d in args.datasets for m in args.methods]
        jobs += [pool.submit(untrained, d, args.image_size) for d in args.datasets]
        rows = []
        for job in jobs:
            rows.append(job.result())
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    rows.sort(key=lambda r: (r["dataset"], r["method"] != "untrained", r["method"]))
    out = {"steps": steps, "image_size": args.image_size, "jobs": args.jobs, "set": args.set, "eval": EVAL,
           "wall_seconds": round(time.perf_counter() - start), "rows": rows}
    (Path(args.out) / "results.json").write_text(json.dumps(out, indent=1))
    print(table(rows))
    print(f"\nwall time {out['wall_seconds'] / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
