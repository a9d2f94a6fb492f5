"""`fdae demo`: the main job on the embedded default, end to end.

Trains the tiny FDAE preset on the procedural Shapes3D (`shapes3d-synth`, rendered on
the training device; no download), evaluates its representation under both protocols,
and writes the figures and `results.json`. Uses a GPU when one is present.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from fdae.errors import FdaeError
from fdae.train.distributed import resolve_device


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="train, evaluate and visualise a small FDAE on procedural Shapes3D")
    p.add_argument("--out", default="demo_out", help="output folder (run, figures, results.json)")
    p.add_argument("--config", default="shapes3d-tiny", help="preset name (configs/NAME.yaml) or YAML file")
    p.add_argument("--minutes", type=float, default=5.0, help="training time limit")
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
    cfg = load_config(args.config, [f"train.device={device}", f"train.time_limit_min={args.minutes}",
                                    *args.overrides])
    from fdae.data import get_dataset

    dataset = get_dataset(cfg.data.name, root=cfg.data.root, image_size=cfg.data.image_size)
    if getattr(dataset, "factor_sizes", None) is None:
        raise FdaeError(f"the demo evaluates on a dataset with ground-truth factors, and {cfg.data.name} is an image "
                        f"folder; train on it with `fdae train`, then use `fdae viz RUN_DIR` and `fdae eval RUN_DIR`")
    kind = f"procedural, rendered on {device}" if dataset.procedural else "real files"
    print(f"fdae demo: training {cfg.name} on {cfg.data.name} ({kind}) "
          f"for at most {args.minutes:g} min or {cfg.train.steps} steps")
    t0 = time.time()
    result = train(cfg, run_dir)
    train_s = time.time() - t0

    loaded = load_run(run_dir, device=device)
    model, dataset = loaded.method, loaded.dataset
    results = {"dataset": dataset.name, "procedural": bool(dataset.procedural), "step": loaded.step,
               "train_seconds": round(train_s, 1), "config": str(run_dir / "config.yaml"),
               "final_loss": result.last_metrics.get("loss"), "protocols": {}}
    # DCI's boosted trees on every raw code dimension take minutes on a CPU: the standard
    # protocol here reports the cheap metrics; `fdae eval RUN_DIR --protocol dlib` runs all.
    for protocol, metrics in (("paper", ["dci", "factor_vae", "mig"]), ("dlib", ["factor_vae", "mig", "sap"])):
        t1 = time.time()
        res = evaluate(dataset, model.encode, metrics=metrics, protocol=protocol,
                       random_state=0, groups=model.groups, num_train=cfg.eval.num_train,
                       num_test=cfg.eval.num_test, num_votes_train=cfg.eval.num_votes_train,
                       num_votes_eval=cfg.eval.num_votes_eval, device=device)
        res["eval_seconds"] = round(time.time() - t1, 1)
        results["protocols"][protocol] = to_builtin(res)
    figures = write_figures(model, dataset, out / "figures", n=6, steps=20, seed=0, device=device)
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
