"""`fdae demo`: the main job on the embedded default, end to end.

Trains the demo FDAE preset (`shapes3d-demo`: procedural Shapes3D at 32 px, rendered on
the training device; no download) for a fixed number of steps, evaluates its
representation under both protocols, and writes labelled figures and `results.json`.
Steps, not minutes: the result is the same on a busy machine, only later. Uses a GPU
when one is present.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from fdae.errors import FdaeError
from fdae.train.distributed import resolve_device


DEFAULT_PRESET = "shapes3d-demo"
# Wall-clock of the default demo on an idle 2-core CPU, measured (BENCHMARKS.md, "The demo"):
# training, evaluation (both protocols) and figures, in minutes.
IDLE_2CORE_MINUTES = {"train": 6.9, "eval": 0.9, "figures": 0.8}  # figures: 45 s with traversals


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="train, evaluate and visualise a small FDAE on procedural Shapes3D")
    p.add_argument("--out", default="demo_out", help="output folder (run, figures, results.json)")
    p.add_argument("--config", default=DEFAULT_PRESET, help="preset name (see `fdae data list`) or YAML file")
    p.add_argument("--minutes", type=float, default=None,
                   help="optional training time limit (default: none; the preset's train.steps decide, so the "
                        "result does not depend on the machine's speed)")
    p.add_argument("--device", default="auto")
    p.add_argument("overrides", nargs="*", help="config overrides key=value")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fdae.commands.viz import write_figures
    from fdae.config import load_config
    from fdae.metrics import evaluate
    from fdae.metrics.utils import to_builtin
    from fdae.train.checkpoint import load_run
    from fdae.train.loop import train

    out = Path(args.out)
    run_dir = out / "run"
    if run_dir.exists():
        raise FdaeError(f"{run_dir} exists already; pass another --out or remove it")
    device = resolve_device(args.device, source="--device")
    if device.type == "cpu" and not os.environ.get("OMP_NUM_THREADS"):
        # The thread count changes the order of floating-point sums, hence the trained
        # weights: one thread gives the same numbers on an idle or a busy machine of any
        # size. It costs this small model 1.5x on an idle 2-core machine and saves 1.6x on a
        # busy one (BENCHMARKS.md, "CPU threads").
        import torch

        torch.set_num_threads(1)
    limit = [] if args.minutes is None else [f"train.time_limit_min={args.minutes}"]
    cfg = load_config(args.config, [f"train.device={device}", *limit, *args.overrides])
    from fdae.data import get_dataset

    dataset = get_dataset(cfg.data.name, root=cfg.data.root, image_size=cfg.data.image_size)
    if getattr(dataset, "factor_sizes", None) is None:
        raise FdaeError(f"the demo evaluates on a dataset with ground-truth factors, and {cfg.data.name} is an image "
                        f"folder; train on it with `fdae train`, then use `fdae viz RUN_DIR` and `fdae eval RUN_DIR`")
    kind = f"procedural, rendered on {device}" if dataset.procedural else "real files"
    size = dataset.image_size
    print(f"fdae demo: training {cfg.name} on {cfg.data.name} ({kind}, {size}x{size} px) for {cfg.train.steps} steps "
          f"of {cfg.train.batch_size} images" + (f" or at most {args.minutes:g} min" if args.minutes else ""))
    if args.config == DEFAULT_PRESET and device.type == "cpu" and not args.overrides:
        m = IDLE_2CORE_MINUTES
        print(f"expected time on an idle 2-core CPU: about {sum(m.values()):.0f} min (training {m['train']:g}, "
              f"evaluation {m['eval']:g}, figures {m['figures']:g}); longer on a busy machine, same result. "
              "The progress bars show the live estimate.")
    t0 = time.time()
    result = train(cfg, run_dir)
    train_s = time.time() - t0

    loaded = load_run(run_dir, device=device)
    model, dataset = loaded.method, loaded.dataset
    results = {"dataset": dataset.name, "procedural": bool(dataset.procedural), "image_size": dataset.image_size,
               "step": loaded.step,
               "train_seconds": round(train_s, 1), "config": str(run_dir / "config.yaml"),
               "final_loss": result.last_metrics.get("loss"), "protocols": {}}
    # DCI's boosted trees on every raw code dimension take minutes on a CPU: the standard
    # protocol here reports the cheap metrics; `fdae eval RUN_DIR --protocol dlib` runs all.
    plan = (("paper", ["dci", "factor_vae", "mig"]), ("dlib", ["factor_vae", "mig", "sap"]))
    from tqdm import tqdm

    with tqdm(total=sum(len(m) for _, m in plan), desc="evaluating", unit="metric", dynamic_ncols=True) as bar:
        for protocol, metrics in plan:
            t1, done_before = time.time(), bar.n

            def say(msg: str, protocol: str = protocol, done_before: int = done_before) -> None:
                # evaluate() announces each metric as it starts: the ones before it are done.
                if msg.startswith("computing "):
                    name = msg[len("computing "):]
                    bar.update(done_before + metrics.index(name) - bar.n)
                    bar.set_postfix_str(f"{protocol} {name}")

            res = evaluate(dataset, model.encode, metrics=metrics, protocol=protocol,
                           random_state=0, groups=model.groups, num_train=cfg.eval.num_train,
                           num_test=cfg.eval.num_test, num_votes_train=cfg.eval.num_votes_train,
                           num_votes_eval=cfg.eval.num_votes_eval, device=device, progress=say,
                           concepts=getattr(model, "paper_concepts", None))
            bar.update(done_before + len(metrics) - bar.n)
            res["eval_seconds"] = round(time.time() - t1, 1)
            results["protocols"][protocol] = to_builtin(res)
    print("making figures ...", flush=True)
    t2 = time.time()
    figures = write_figures(model, dataset, out / "figures", n=6, steps=20, seed=0, device=device)
    results["figure_seconds"] = round(time.time() - t2, 1)
    results["figures"] = {k: str(v) for k, v in figures.items()}
    (out / "results.json").write_text(json.dumps(results, indent=1))

    print(f"\ntrained {loaded.step} steps in {train_s / 60:.1f} min; dataset: {dataset.name} "
          f"({'procedural' if dataset.procedural else 'real files'})")
    print(f"{'protocol':10s} {'DCI':>7s} {'FactorVAE':>10s} {'MIG':>7s} {'SAP':>7s}")
    for protocol, res in results["protocols"].items():
        m = res["metrics"]
        cells = [m.get("dci", {}).get("disentanglement"), m["factor_vae"]["eval_accuracy"], m["mig"]["mig"],
                 m.get("sap", {}).get("sap")]
        print(f"{protocol:10s} " + " ".join("      -" if v is None else f"{v:7.3f}" for v in cells))
    print(f"\nresults: {out / 'results.json'}\nfigures: {out / 'figures'}")
    return 0
