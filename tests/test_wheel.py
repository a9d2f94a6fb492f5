"""A wheel built from the repository installs into a fresh virtual environment and runs
from an empty directory: `fdae data list` and a 2-step `fdae demo` (the presets are
package data, not files of the checkout). No network: the wheel is built without build
isolation, and the new environment borrows this one's dependencies (torch, numpy, ...)
through a .pth file instead of downloading them."""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from fdae.config import list_presets

ROOT = Path(__file__).resolve().parents[1]
# The demo's preset shrunk to seconds: 16 px images, a one-level U-Net, two concepts,
# two steps and evaluation at the smallest sizes its metrics accept.
TINY_DEMO = ["train.steps=2", "train.log_every=1", "data.image_size=16", "unet.channels=16", "unet.channel_mult=[1]",
             "unet.attn_resolutions=[]", "method.num_concepts=2", "method.encoder_width=8",
             "method.mask_decoder_width=32", "eval.num_train=40", "eval.num_test=20", "eval.num_votes_train=10",
             "eval.num_votes_eval=10", "eval.batch_size=8"]


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=600, **kw)
    assert proc.returncode == 0, f"{cmd}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


def _build_wheel(tmp_path: Path) -> Path:
    """The wheel of a copy of the project (the build writes build/ and egg-info next to
    its sources, which must not land in the checkout)."""
    pytest.importorskip("setuptools", reason="building the wheel offline needs setuptools in this environment")
    project = tmp_path / "project"
    shutil.copytree(ROOT / "src", project / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, project / name)
    out = tmp_path / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
          "-w", out, project])
    wheels = list(out.glob("fdae-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.mark.slow
def test_the_wheel_runs_data_list_and_demo_from_an_empty_directory(tmp_path):
    wheel = _build_wheel(tmp_path)
    members = set(zipfile.ZipFile(wheel).namelist())
    assert {f"fdae/configs/{name}.yaml" for name in list_presets()} <= members

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    purelib = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    # Dependencies from this environment, after the new one's own site-packages; the .pth
    # files there (this checkout's editable install among them) are not processed.
    borrowed = [p for p in site.getsitepackages() if Path(p).is_dir()]
    (purelib / "_borrowed_dependencies.pth").write_text("\n".join(borrowed) + "\n")
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "-q", wheel])

    empty = tmp_path / "empty"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "FDAE_DATA_ROOT")}
    env.update(OMP_NUM_THREADS="1", MPLCONFIGDIR=str(tmp_path / "mpl"), PYTHONNOUSERSITE="1")
    where = _run([python, "-c", "import fdae, fdae.config; print(fdae.__file__); print(fdae.config.PRESET_DIR)"],
                 cwd=empty, env=env).stdout.split()
    assert all(Path(p).is_relative_to(purelib) for p in where), where  # the wheel's fdae, not the checkout's

    fdae = env_dir / "bin" / "fdae"
    listing = _run([fdae, "data", "list"], cwd=empty, env=env).stdout
    assert "shapes3d-synth" in listing and "\n  shapes3d-tiny " in listing and "\n  cars3d-paper " in listing

    demo = _run([fdae, "demo", "--out", "out", *TINY_DEMO], cwd=empty, env=env)
    results = json.loads((empty / "out" / "results.json").read_text())
    assert results["step"] == 2 and set(results["protocols"]) == {"paper", "dlib"}, demo.stdout[-2000:]
    assert sorted(p.name for p in empty.iterdir()) == ["out"]  # nothing written beside --out
