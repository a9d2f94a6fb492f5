"""Scores of a run against its training steps, from its checkpoints (BENCHMARKS.md, "The demo").

Evaluates the untrained encoder (the trainer's own seeded initialisation, step 0) and every
checkpoint of RUN_DIR with the run's evaluation settings under the paper protocol (and the
run's N), and prints one Markdown row per step. For the demo:

    .venv/bin/fdae demo --out demo_out
    .venv/bin/python benchmarks/demo_curve.py demo_out/run --out demo_out/curve.json
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

from fdae.data import get_dataset
from fdae.metrics import evaluate
from fdae.metrics.utils import write_json
from fdae.train.checkpoint import load_run, run_config
from fdae.train.loop import initial_method


def scores(method, dataset, cfg) -> dict[str, float]:
    res = evaluate(dataset, method.encode, metrics=["dci", "factor_vae", "mig"], protocol="paper", random_state=0,
                   groups=method.groups, concepts=getattr(method, "paper_concepts", None),
                   num_train=cfg.eval.num_train, num_test=cfg.eval.num_test,
                   num_votes_train=cfg.eval.num_votes_train, num_votes_eval=cfg.eval.num_votes_eval)
    m = res["metrics"]
    return {"dci": m["dci"]["disentanglement"], "factor_vae": m["factor_vae"]["eval_accuracy"], "mig": m["mig"]["mig"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir")
    ap.add_argument("--out", default=None, help="JSON file for the rows")
    args = ap.parse_args()
    cfg = run_config(args.run_dir)
    dataset = get_dataset(cfg.data.name, root=cfg.data.root, image_size=cfg.data.image_size)
    rows = []
    print("| step | images | DCI (D) | FactorVAE | MIG | eval s |\n|---|---|---|---|---|---|", flush=True)
    checkpoints = sorted((Path(args.run_dir) / "checkpoints").glob("step_*.pt"))
    for step, model in [(0, initial_method(cfg, dataset))] + \
            [(int(p.stem.split("_")[1]), p) for p in checkpoints]:
        method = model if step == 0 else load_run(model, dataset=dataset).method
        t = time.perf_counter()
        row = {"step": step, "images": step * cfg.train.batch_size, **scores(method, dataset, cfg),
               "eval_seconds": round(time.perf_counter() - t, 1)}
        rows.append(row)
        print(f"| {step}{' (untrained)' if step == 0 else ''} | {row['images']:,} | {row['dci']:.3f} | "
              f"{row['factor_vae']:.3f} | {row['mig']:.3f} | {row['eval_seconds']} |", flush=True)
    if args.out:
        write_json({"run_dir": str(args.run_dir), "protocol": "paper", "eval": dataclasses.asdict(cfg.eval), "rows": rows}, args.out)


if __name__ == "__main__":
    main()
