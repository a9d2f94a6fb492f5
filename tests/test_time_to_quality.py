"""benchmarks/time_to_quality.py end to end on a CPU-sized run: sessions that resume,
background periodic evaluation, the final evaluation under both protocols, curve, figures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytest.importorskip("matplotlib")


SMALL = ["--final-train", "120", "--final-test", "60", "--dlib-train", "120", "--dlib-test", "60",
         "--figure-steps", "2", "train.batch_size=4", "train.image_every=0", "train.device=cpu",
         "eval.async_workers=1", "eval.metrics=[mig,factor_vae]", "eval.num_train=60", "eval.num_test=30",
         "eval.num_votes_train=20", "eval.num_votes_eval=10", "eval.batch_size=8"]


def _run(*args):
    cmd = [sys.executable, str(ROOT / "benchmarks" / "time_to_quality.py"), "--config", "shapes3d-tiny", *args]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def test_time_to_quality_runs_in_resumed_sessions(tmp_path):
    out = tmp_path / "ttq"
    args = ["--minutes", "0.25", "--out", str(out), "--dlib-metrics", "mig,sap", *SMALL, "train.eval_every=5"]
    first = _run("--chunk-minutes", "0.03", "--sessions", "1", *args)  # one short session, then it stops
    assert "session 1:" in first.stdout and "run the same command again" in first.stdout
    assert not (out / "results.json").exists()
    _run("--chunk-minutes", "0.3", *args)  # the same command continues the run to its minutes
    results = json.loads((out / "results.json").read_text())
    assert results["train_minutes"] >= 0.25 * 0.995
    steps = [r["step"] for r in results["curve"]]
    assert steps and steps == sorted(set(steps)) and all(s % 5 == 0 for s in steps)
    assert all(r["background"] for r in results["curve"])
    assert set(results["final"]["paper"]["metrics"]) == {"dci", "factor_vae", "mig"}
    assert set(results["final"]["dlib"]["metrics"]) == {"mig", "sap"}
    assert results["final"]["paper"]["protocol"] == "paper" and results["final"]["dlib"]["protocol"] == "dlib"
    for name in ("curve.png", "masks.png", "swap_grid.png"):
        assert (out / name).stat().st_size > 1000
    assert not list((out / "run" / "eval_snapshots").glob("*.pt"))


def test_a_run_whose_steps_end_first_is_evaluated(tmp_path):
    out = tmp_path / "ttq"
    proc = _run("--minutes", "5", "--sessions", "1", "--out", str(out), "--dlib-metrics", "mig", *SMALL,
                "train.steps=3", "train.eval_every=0")
    assert "session 1: done at step 3" in proc.stdout
    results = json.loads((out / "results.json").read_text())
    assert results["step"] == 3 and results["train_minutes"] < 5
    assert set(results["final"]) == {"paper", "dlib"}
