"""Time to disentanglement: train an FDAE preset in chunks, evaluate, plot, draw figures.

    python benchmarks/time_to_quality.py --config configs/shapes3d-fast.yaml --minutes 20 \
        --chunk-minutes 10 --out OUT_DIR [key=value ...]

Trains in sessions of at most --chunk-minutes that resume from the run's checkpoint
(exactly), until --minutes of training wall time; the preset's periodic evaluation gives
the curve (eval.jsonl -> curve.png). Then the final representation (EMA weights) is
evaluated under the paper protocol at full size and the standard (dlib) protocol, and
the masks / swap figures are written. Evaluation time is reported separately.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import torch  # noqa: E402

from fdae.commands.viz import write_figures  # noqa: E402
from fdae.config import load_config  # noqa: E402
from fdae.metrics import evaluate  # noqa: E402
from fdae.metrics.utils import to_builtin  # noqa: E402
from fdae.train.checkpoint import latest_checkpoint, load_run  # noqa: E402
from fdae.train.loop import train  # noqa: E402


def plot_curve(records: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [("dci", "disentanglement", "DCI"), ("factor_vae", "eval_accuracy", "FactorVAE"), ("mig", "mig", "MIG")]
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=110)
    for metric, field, label in keys:
        xs = [r["minutes"] for r in records if metric in r["metrics"]]
        ys = [r["metrics"][metric][field] for r in records if metric in r["metrics"]]
        ax.plot(xs, ys, marker="o", label=label)
    ax.set_xlabel("training minutes")
    ax.set_ylabel("score (paper protocol, reduced sizes)")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default=str(ROOT / "configs" / "shapes3d-fast.yaml"))
    ap.add_argument("--minutes", type=float, default=20.0, help="total training wall minutes")
    ap.add_argument("--chunk-minutes", type=float, default=10.0)
    ap.add_argument("--out", default="runs/time_to_quality")
    ap.add_argument("--run-dir", default=None, help="where the run lives (default OUT/run)")
    ap.add_argument("--final-train", type=int, default=10000)
    ap.add_argument("--final-test", type=int, default=5000)
    ap.add_argument("--dlib-metrics", default="mig,factor_vae,sap,modularity,dci")
    ap.add_argument("--dlib-train", type=int, default=10000)
    ap.add_argument("--dlib-test", type=int, default=5000)
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()

    out = Path(args.out)
    run_dir = Path(args.run_dir) if args.run_dir else out / "run"
    done = 0.0
    while done < args.minutes - 1e-3:
        chunk = min(args.chunk_minutes, args.minutes - done)
        resume = latest_checkpoint(run_dir) is not None if run_dir.exists() else False
        cfg = load_config(args.config, [*args.overrides, f"train.time_limit_min={chunk}"])
        t0 = time.perf_counter()
        res = train(cfg, run_dir, resume=resume, progress=False)
        done += (time.perf_counter() - t0) / 60.0
        print(f"session: {res.reason} at step {res.step}, {done:.2f} min so far", flush=True)
        if res.reason == "done":
            break

    device = "cuda" if torch.cuda.is_available() else "cpu"
    loaded = load_run(run_dir, device=device)
    model, ds = loaded.method, loaded.dataset
    records = [json.loads(line) for line in (run_dir / "eval.jsonl").read_text().splitlines() if line.strip()] \
        if (run_dir / "eval.jsonl").exists() else []
    results = {"dataset": ds.name, "procedural": bool(ds.procedural), "step": loaded.step,
               "train_minutes": done, "device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
               "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"), "command": " ".join(sys.argv),
               "curve": records, "final": {}}
    for protocol, metrics, n_train, n_test in (("paper", "dci,factor_vae,mig", args.final_train, args.final_test),
                                               ("dlib", args.dlib_metrics, args.dlib_train, args.dlib_test)):
        t0 = time.perf_counter()
        r = evaluate(ds, model.encode, metrics=metrics, protocol=protocol, random_state=0, groups=model.groups,
                     num_train=n_train, num_test=n_test, device=device)
        r = to_builtin(r)
        r["eval_seconds"] = time.perf_counter() - t0
        for m in r.get("metrics", {}).values():
            if isinstance(m, dict):
                m.pop("importance_matrix", None)
        results["final"][protocol] = r
        print(protocol, json.dumps({k: {kk: vv for kk, vv in v.items() if isinstance(vv, float)}
                                    for k, v in r["metrics"].items()}), f"({r['eval_seconds']:.0f} s)", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    if records:
        plot_curve(records, out / "curve.png")
    figs = write_figures(model, ds, out, n=6, steps=30, seed=0, device=device)
    print("figures:", ", ".join(str(p) for p in figs.values()))


if __name__ == "__main__":
    main()
