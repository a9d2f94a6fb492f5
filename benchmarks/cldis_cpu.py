"""CL-Dis against its two halves on this CPU, and how the label-free content-tracking
score ranks runs against the supervised metrics (BENCHMARKS.md, "CL-Dis (issue 19)").

    python benchmarks/cldis_cpu.py compare --jobs 2 --out cldis_compare [--rows CL-Dis Diff-AE]
    python benchmarks/cldis_cpu.py correlation --jobs 2 --out cldis_corr
    python benchmarks/cldis_cpu.py learning --out cldis_learning   # the learning test's numbers

compare: CL-Dis, Diff-AE alone (the same backbone and 16-unit code, no co-pilot) and
beta-VAE alone on shapes3d-synth at 32 px, each for the steps that take about ten minutes
on one thread here, then each one's untrained weights; scored with the standard
protocol (DCI, FactorVAE, MIG at the sizes of vae_cpu.py) and content tracking
(`fdae.metrics.content_tracking`: 32 images, at most 10 axes, 10 Heun steps).

correlation: short runs of several methods on dsprites-synth and shapes3d-synth (VAEs
at several settings, Diff-AE, CL-Dis, untrained encoders), each scored the same way;
prints Spearman's rank correlation between content tracking and each supervised metric,
per dataset, over its runs.

learning: the configuration of tests/test_learning.py's CL-Dis check (500 steps, the
co-pilot at learning rate 1e-3), its untrained and trained FactorVAE score and MIG at the
test's evaluation sizes.

Runs go `--jobs` at a time, one thread each. Writes OUT/results.json and prints Markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

EVAL = {"num_train": 2000, "num_test": 1000, "num_votes_train": 300, "num_votes_eval": 200}
TRACKING = {"num_images": 32, "units": 10, "steps": 10}
BASE = ["data.image_size=32", "train.log_every=50", "train.ckpt_every=0", "train.image_every=0",
        "train.eval_every=0", "train.device=cpu"]
# The Diff-AE alone: CL-Dis's backbone (encoder width, U-Net, code size 10 + 6, EDM's default
# noise centre, which diffae-tiny moved to 2.0) without its co-pilot.
DIFFAE = ["method.latent_dim=16", "method.encoder_width=16", "unet.channel_mult=[1,1]", "train.batch_size=16",
          "optim.lr=0.001", "train.ema_decay=0.99", "edm.p_mean=-1.2"]
COMPARE = [  # label, preset, steps (about ten minutes each on one thread), overrides
    ("CL-Dis", "cldis-shapes3d-synth", 2600, ()),
    ("Diff-AE", "diffae-tiny", 5000, tuple(DIFFAE)),
    ("beta-VAE", "beta-vae-shapes3d-synth", 12000, ()),
]


def correlation_runs(dataset: str) -> list[tuple[str, str, int, tuple[str, ...]]]:
    vae = lambda m: f"{m}-{dataset}"  # noqa: E731
    return [
        ("beta-VAE untrained", vae("beta-vae"), 0, ()),
        ("CL-Dis untrained", f"cldis-{dataset}", 0, ()),
        ("beta-VAE b=1", vae("beta-vae"), 2000, ("method.beta=1",)),
        ("beta-VAE b=4", vae("beta-vae"), 2000, ()),
        ("beta-VAE b=16", vae("beta-vae"), 2000, ("method.beta=16",)),
        ("beta-TCVAE", vae("beta-tcvae"), 2000, ()),
        ("DIP-VAE-II", vae("dip-vae-ii"), 2000, ()),
        ("AnnealedVAE", vae("annealed-vae"), 2000, ("method.iteration_threshold=700",)),
        ("Diff-AE", "diffae-tiny", 1000, (f"data.name={dataset}", *DIFFAE)),
        ("CL-Dis", f"cldis-{dataset}", 1000, ()),
    ]


def _one_thread() -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)


def score(method, dataset) -> dict:
    """Standard-protocol DCI / FactorVAE / MIG and content tracking of a trained method."""
    from fdae.metrics import evaluate
    from fdae.metrics.content_tracking import content_tracking

    t = time.perf_counter()
    res = evaluate(dataset, method.encode, metrics=["dci", "factor_vae", "mig"], protocol="dlib", random_state=0,
                   groups=method.groups, device="cpu", **EVAL)
    m = res["metrics"]
    supervised_s = time.perf_counter() - t
    t = time.perf_counter()
    ct = content_tracking(method, dataset, seed=0, **TRACKING)
    return {"dci": float(m["dci"]["disentanglement"]), "factor_vae": float(m["factor_vae"]["eval_accuracy"]),
            "mig": float(m["mig"]["mig"]), "tracking": ct["tracking"], "consistency": ct["consistency"],
            "active_units": ct["active_units"], "axes": len(ct["axes"]), "eval_seconds": round(supervised_s, 1),
            "tracking_seconds": round(time.perf_counter() - t, 1)}


def train_and_score(label: str, preset: str, steps: int, extra: tuple[str, ...], out: str) -> dict:
    _one_thread()
    from fdae.config import load_config
    from fdae.data import get_dataset
    from fdae.train.checkpoint import load_run
    from fdae.train.loop import initial_method, train

    cfg = load_config(preset, [*BASE, f"train.steps={max(steps, 1)}", *extra])
    row = {"label": label, "preset": preset, "dataset": cfg.data.name, "steps": steps, "overrides": list(extra)}
    if steps == 0:  # the weights every run of this preset starts from
        dataset = get_dataset(cfg.data.name, image_size=cfg.data.image_size)
        return {**row, **score(initial_method(cfg, dataset).eval(), dataset)}
    run_dir = Path(out) / f"{label.replace(' ', '_').replace('=', '')}-{cfg.data.name}"
    t = time.perf_counter()
    train(cfg, run_dir, progress=False, tensorboard=False)
    train_s = time.perf_counter() - t
    loaded = load_run(run_dir)
    return {**row, "train_seconds": round(train_s, 1), "steps_per_s": round(steps / train_s, 2),
            **score(loaded.method, loaded.dataset)}


def table(rows: list[dict]) -> str:
    lines = ["| run | dataset | steps | train s | DCI | FactorVAE | MIG | tracking | active axes |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['label']} | {r['dataset']} | {r['steps']} | {r.get('train_seconds', 0):.0f} | "
                     f"{r['dci']:.3f} | {r['factor_vae']:.3f} | {r['mig']:.3f} | {r['tracking']:.3f} | "
                     f"{r['active_units']}/{r['axes']} |")
    return "\n".join(lines)


def rank_correlations(rows: list[dict]) -> dict:
    """Spearman's rho (and its p-value) of content tracking against each supervised metric, per dataset."""
    from scipy.stats import spearmanr

    out = {}
    for ds in sorted({r["dataset"] for r in rows}):
        sub = [r for r in rows if r["dataset"] == ds]
        out[ds] = {"runs": len(sub)}
        for metric in ("dci", "factor_vae", "mig"):
            rho, p = spearmanr([r["tracking"] for r in sub], [r[metric] for r in sub])
            out[ds][metric] = {"rho": float(rho), "p": float(p)}
    return out


def learning(out: str, extra: list[str]) -> None:
    """The CL-Dis learning test's numbers, on one thread."""
    _one_thread()
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from _learning_helpers import _scores
    from test_learning import CLDIS_EVAL, CLDIS_STEPS

    from fdae.config import load_config
    from fdae.data import get_dataset
    from fdae.train.checkpoint import load_run
    from fdae.train.loop import initial_method, train

    cfg = load_config("cldis-shapes3d-synth", [f"train.steps={CLDIS_STEPS}", "method.vae_lr=0.001",
                                               "train.device=cpu", "train.ckpt_every=0", "train.image_every=0",
                                               "train.eval_every=0", *extra])
    dataset = get_dataset(cfg.data.name, image_size=cfg.data.image_size)
    untrained = _scores(initial_method(cfg, dataset), dataset, CLDIS_EVAL)
    train(cfg, Path(out) / "run", progress=False, tensorboard=False)
    trained = _scores(load_run(Path(out) / "run", device="cpu").method, dataset, CLDIS_EVAL)
    print(f"cldis-shapes3d-synth, {CLDIS_STEPS} steps, method.vae_lr=0.001 {' '.join(extra)}: "
          f"untrained {untrained}, trained {trained}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("study", choices=("compare", "correlation", "learning"))
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--out", required=True)
    p.add_argument("--datasets", nargs="+", default=["dsprites-synth", "shapes3d-synth"])
    p.add_argument("--rows", nargs="+", default=[label for label, *_ in COMPARE],
                   help="compare: which runs (and their untrained weights), e.g. --rows CL-Dis Diff-AE")
    p.add_argument("--set", nargs="*", default=[], help="learning: config overrides, e.g. method.distill_weight=10")
    args = p.parse_args()
    if args.study == "learning":
        learning(args.out, args.set)
        return 0
    if args.study == "compare":
        chosen = [row for row in COMPARE if row[0] in args.rows]
        if len(chosen) != len(set(args.rows)):
            p.error(f"--rows: choose among {', '.join(label for label, *_ in COMPARE)}")
        runs = [*[(f"{label} untrained", preset, 0, extra) for label, preset, _, extra in chosen], *chosen]
    else:
        runs = [r for ds in args.datasets for r in correlation_runs(ds)]
    os.makedirs(args.out, exist_ok=True)
    with ProcessPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(train_and_score, label, preset, steps, tuple(extra), args.out)
                   for label, preset, steps, extra in runs]
        rows = []
        for f in futures:
            rows.append(f.result())
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    out = {"study": args.study, "eval": EVAL, "tracking": TRACKING, "rows": rows}
    print(table(rows))
    if args.study == "correlation":
        out["spearman"] = rank_correlations(rows)
        for ds, r in out["spearman"].items():
            print(f"{ds} ({r['runs']} runs): Spearman rho of tracking vs DCI {r['dci']['rho']:.2f} "
                  f"(p {r['dci']['p']:.2f}), FactorVAE {r['factor_vae']['rho']:.2f} (p {r['factor_vae']['p']:.2f}), "
                  f"MIG {r['mig']['rho']:.2f} (p {r['mig']['p']:.2f})")
    Path(args.out, "results.json").write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
