"""Time to disentanglement: train an FDAE preset in chunks, evaluate, plot, draw figures.

    python benchmarks/time_to_quality.py --config shapes3d-fast --minutes 20 \
        --chunk-minutes 8 [--sessions 1] --out OUT_DIR [key=value ...]

Trains in sessions of at most --chunk-minutes wall time that resume from the run's
checkpoint (exactly), until the run holds --minutes of *training* time (evaluation
excluded). With --sessions K an invocation stops after K sessions; the same command
continues the run (one session per device call). The preset's periodic evaluation
(in a background process when eval.async_workers > 0) gives the curve (eval.jsonl ->
curve.png). Once the minutes are reached, the final representation (EMA weights) is
evaluated at full size under the paper protocol (here) and the standard protocol (a
parallel `fdae eval` process), and the masks / swap figures are written. Evaluation
time is reported separately from training time. `--step-seconds S` counts each training
step as S seconds instead of measuring the wall clock, so that the sessions stop at the
same steps on any machine (the tests use it).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import torch  # noqa: E402

from fdae.cli import python_module_command  # noqa: E402
from fdae.commands.viz import write_figures  # noqa: E402
from fdae.config import load_config  # noqa: E402
from fdae.metrics import evaluate  # noqa: E402
from fdae.metrics.utils import to_builtin  # noqa: E402
from fdae.train.checkpoint import latest_checkpoint, load_run  # noqa: E402
from fdae.train.logging import read_jsonl  # noqa: E402
from fdae.train.loop import StepClock, train  # noqa: E402


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


def trained_minutes(run_dir: Path) -> float:
    """Training minutes (evaluation excluded) recorded in the run's newest checkpoint."""
    ckpt = latest_checkpoint(run_dir) if run_dir.exists() else None
    if ckpt is None:
        return 0.0
    data = torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True)
    return float(data.get("counters", {}).get("train_seconds", 0.0)) / 60.0


def train_sessions(args: argparse.Namespace, run_dir: Path) -> tuple[float, bool]:
    """Train until the run holds --minutes of training time (within 0.5%), in sessions of
    at most --chunk-minutes wall time (at most --sessions of them in this invocation).
    Returns the run's training minutes and whether its training is complete (the minutes
    reached, or no steps left in train.steps)."""
    tolerance = max(1e-3, 0.005 * args.minutes)
    done = trained_minutes(run_dir)
    sessions = 0
    while done < args.minutes - tolerance:
        if args.sessions is not None and sessions >= args.sessions:
            return done, False
        # A session's limit is wall time; a little slack lets it cover the minutes asked.
        chunk = min(args.chunk_minutes, args.minutes - done + 0.05)
        last = done + chunk >= args.minutes - tolerance
        resume = latest_checkpoint(run_dir) is not None if run_dir.exists() else False
        # Between sessions, pending background evaluations are left to the next session
        # (it evaluates their snapshots); the session that completes the run waits for them.
        cfg = load_config(args.config, [*args.overrides, f"train.time_limit_min={chunk}",
                                        f"eval.async_wait={'true' if last else 'false'}"])
        t0 = time.perf_counter()
        clock = StepClock(args.step_seconds) if args.step_seconds else None
        res = train(cfg, run_dir, resume=resume, progress=False, clock=clock)
        sessions += 1
        done = res.minutes
        print(f"session {sessions}: {res.reason} at step {res.step}; {done:.2f} training minutes in the run "
              f"({(time.perf_counter() - t0) / 60:.2f} min wall)", flush=True)
        if res.reason == "signal":
            raise SystemExit(f"stopped by a signal at step {res.step}; run the same command to continue")
        if res.reason == "done":  # train.steps reached before the minutes
            return done, True
    return done, True


def start_dlib_evaluation(run_dir: Path, out: Path, args: argparse.Namespace, device: str) -> subprocess.Popen:
    """The standard-protocol evaluation in its own process (`fdae eval`), beside the
    paper protocol's in this one: the two share the GPU briefly and the CPU cores."""
    cmd, env = python_module_command("fdae", "eval", str(run_dir), "--protocol", "dlib", "--metrics",
                                     args.dlib_metrics, "--num-train", str(args.dlib_train), "--num-test",
                                     str(args.dlib_test), "--seed", "0", "--device", device, "--out", str(out),
                                     "--quiet")
    return subprocess.Popen(cmd, env=env)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="shapes3d-fast", help="preset name or YAML file")
    ap.add_argument("--minutes", type=float, default=20.0, help="training minutes of the whole run (eval excluded)")
    ap.add_argument("--chunk-minutes", type=float, default=10.0, help="wall minutes of one training session")
    ap.add_argument("--sessions", type=int, default=None,
                    help="train at most this many sessions in this invocation (then resume with the same command)")
    ap.add_argument("--step-seconds", type=float, default=None,
                    help="count each training step as this many seconds instead of the wall clock "
                         "(sessions then stop at fixed steps; for tests)")
    ap.add_argument("--out", default="runs/time_to_quality")
    ap.add_argument("--run-dir", default=None, help="where the run lives (default OUT/run)")
    ap.add_argument("--final-train", type=int, default=10000)
    ap.add_argument("--final-test", type=int, default=5000)
    # Standard-protocol DCI is left out by default: sklearn's boosted trees on FDAE's 960
    # raw code dimensions take about an hour for the 15-class factor (BENCHMARKS.md).
    ap.add_argument("--dlib-metrics", default="mig,factor_vae,sap,modularity")
    ap.add_argument("--dlib-train", type=int, default=10000)
    ap.add_argument("--dlib-test", type=int, default=5000)
    ap.add_argument("--figure-steps", type=int, default=30, help="Heun steps of the figures' decoding")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()

    out = Path(args.out)
    run_dir = Path(args.run_dir) if args.run_dir else out / "run"
    done, complete = train_sessions(args, run_dir)
    if not complete:
        print(f"{done:.2f} of {args.minutes} training minutes done; run the same command again to continue")
        return

    device = "cuda" if torch.cuda.is_available() else "cpu"
    out.mkdir(parents=True, exist_ok=True)
    t_eval = time.perf_counter()
    dlib_json = out / "final_dlib.json"
    dlib_proc = start_dlib_evaluation(run_dir, dlib_json, args, device) if args.dlib_metrics else None
    loaded = load_run(run_dir, device=device)
    model, ds = loaded.method, loaded.dataset
    records = read_jsonl(run_dir / "eval.jsonl")
    results = {"dataset": ds.name, "procedural": bool(ds.procedural), "step": loaded.step,
               "train_minutes": done, "device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
               "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"), "command": " ".join(sys.argv),
               "curve": records, "final": {}}
    t0 = time.perf_counter()
    try:
        r = evaluate(ds, model.encode, metrics="dci,factor_vae,mig", protocol="paper", random_state=0,
                     groups=model.groups, num_train=args.final_train, num_test=args.final_test, device=device,
                     concepts=model.paper_concepts)
    except BaseException:
        if dlib_proc is not None:
            dlib_proc.kill()
            dlib_proc.wait()
        raise
    r = to_builtin(r)
    r["eval_seconds"] = time.perf_counter() - t0
    results["final"]["paper"] = r
    failed = None
    if dlib_proc is not None:
        if dlib_proc.wait() == 0:
            results["final"]["dlib"] = json.loads(dlib_json.read_text())
        else:  # keep the paper protocol's numbers; say what failed
            failed = f"the standard-protocol evaluation (fdae eval) failed with exit {dlib_proc.returncode}"
            results["final"]["dlib"] = {"error": failed}
    results["eval_wall_seconds"] = time.perf_counter() - t_eval
    for protocol, r in results["final"].items():
        if "metrics" not in r:
            continue
        for m in r.get("metrics", {}).values():
            if isinstance(m, dict):
                m.pop("importance_matrix", None)
        print(protocol, json.dumps({k: {kk: vv for kk, vv in v.items() if isinstance(vv, float)}
                                    for k, v in r["metrics"].items() if isinstance(v, dict)}), flush=True)
    print(f"final evaluation: {results['eval_wall_seconds']:.0f} s wall (both protocols)", flush=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    if records:
        plot_curve(records, out / "curve.png")
    figs = write_figures(model, ds, out, n=6, steps=args.figure_steps, seed=0, device=device)
    print("figures:", ", ".join(str(p) for p in figs.values()))
    if failed:
        raise SystemExit(failed)


if __name__ == "__main__":
    main()
