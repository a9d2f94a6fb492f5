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
    # Each step counts 1.3 s (a step clock, not the wall clock), so the sessions stop at
    # the same steps on a busy machine as on an idle one: 0.25 min = 15 s of training.
    out = tmp_path / "ttq"
    args = ["--minutes", "0.25", "--step-seconds", "1.3", "--out", str(out), "--dlib-metrics", "mig,sap", *SMALL,
            "train.eval_every=5"]
    # one short session (1.8 s: 2 steps), then it stops and says how to go on
    first = _run("--chunk-minutes", "0.03", "--sessions", "1", *args)
    assert "session 1: time_limit at step 2;" in first.stdout and "run the same command again" in first.stdout
    assert not (out / "results.json").exists()
    # The same command continues: one session of the 15 s left plus 3 s of slack (15.4 s:
    # 12 more steps), which completes the run.
    second = _run("--chunk-minutes", "0.3", *args)
    assert "session 1: time_limit at step 14;" in second.stdout
    results = json.loads((out / "results.json").read_text())
    assert results["step"] == 14 and results["train_minutes"] == pytest.approx(14 * 1.3 / 60, rel=1e-9)
    assert [r["step"] for r in results["curve"]] == [5, 10]
    assert [r["minutes"] for r in results["curve"]] == pytest.approx([5 * 1.3 / 60, 10 * 1.3 / 60], rel=1e-9)
    assert all(r["background"] for r in results["curve"])
    assert set(results["final"]["paper"]["metrics"]) == {"dci", "factor_vae", "mig"}
    assert set(results["final"]["dlib"]["metrics"]) == {"mig", "sap"}
    assert results["final"]["paper"]["protocol"] == "paper" and results["final"]["dlib"]["protocol"] == "dlib"
    for name in ("curve.png", "masks.png", "swap_grid.png"):
        assert (out / name).stat().st_size > 1000
    assert not list((out / "run" / "eval_snapshots").glob("*.pt"))


def test_a_run_whose_steps_end_first_is_evaluated(tmp_path):
    out = tmp_path / "ttq"
    proc = _run("--minutes", "5", "--step-seconds", "1", "--sessions", "1", "--out", str(out), "--dlib-metrics",
                "mig", *SMALL, "train.steps=3", "train.eval_every=0")
    assert "session 1: done at step 3" in proc.stdout
    results = json.loads((out / "results.json").read_text())
    assert results["step"] == 3 and results["train_minutes"] == pytest.approx(3 / 60, rel=1e-9)
    assert set(results["final"]) == {"paper", "dlib"}
