"""The GPU benchmark scripts run their same code on the CPU at small sizes, so that a
script error shows here rather than in a GPU session (the timings there are the point;
here only that every path runs and writes its JSON)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SMALL_METHOD = ["method.content_dim=8", "method.mask_dim=8", "method.adjust_dim=8", "method.encoder_width=8",
                "method.mask_decoder_width=24", "unet.channels=16"]


def _run(script: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], capture_output=True,
                          text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def test_gpu_throughput_script_runs_on_the_cpu(tmp_path):
    out = tmp_path / "gt.json"
    proc = _run("gpu_throughput.py", "--device", "cpu", "--preset", "tiny", "--batches", "2",
                "--variants", "fp32,bf16+fradam,fp32+adamw", "--steps", "1", "--warmup", "6",
                "--out", str(out), "--set", *SMALL_METHOD)
    rows = json.loads(out.read_text())["rows"]
    assert [r["variant"] for r in rows] == ["fp32", "bf16+fradam", "fp32+adamw"]
    assert [r["optimizer"] for r in rows] == ["radam", "fradam", "adamw"]
    assert all(r["img_per_s"] > 0 and r["mean_loss"] > 0 for r in rows)
    assert "| fdae | tiny | 2 | bf16 | no | fradam |" in proc.stdout


def test_optimizer_step_script_runs_on_the_cpu(tmp_path):
    out = tmp_path / "opt.json"
    _run("optimizer_step.py", "--preset", "tiny", "--device", "cpu", "--steps", "1", "--warmup", "6", "--out", str(out))
    rows = json.loads(out.read_text())["rows"]
    assert [r["optimizer"] for r in rows] == ["radam-foreach", "fused-radam", "adam-fused"]
    assert all(r["ms_per_step"] > 0 for r in rows)


def test_unet_conditioning_script_runs_and_sees_the_noise_level():
    proc = _run("unet_conditioning.py", "--steps", "6", "--variants", "scale-shift:",
                "additive:unet.scale_shift=false")
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert [r["name"] for r in rows] == ["scale-shift", "additive"]
    assert all(len(r["mse"]) == 4 and r["loss"] > 0 for r in rows)
    assert all(r["move"] > 1e-3 for r in rows)  # after 6 steps both already hear c_noise
    assert "| scale-shift | " in proc.stdout and "| additive | " in proc.stdout
