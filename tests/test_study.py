"""Studies: the grid runs locally, survives being killed, runs through submitit's job
machinery, and its report's numbers equal a hand computation."""

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from fdae.cli import main
from fdae.errors import FdaeError
from fdae.study.report import collect, csv_text, latex, markdown
from fdae.study.runner import status
from fdae.study.spec import load_study

SMALL_VAE = ["method.num_latents=4", "train.batch_size=8", "train.log_every=1", "train.ckpt_every=2",
             "data.image_size=16", "train.image_every=0", "train.eval_every=0"]


def write_study(tmp_path, **extra):
    spec = {
        "name": "tiny",
        "out": str(tmp_path / "out"),
        "seeds": [0, 1],
        "methods": {"beta-vae": {"preset": "beta-vae-dsprites-synth"},
                    "beta-tcvae": {"preset": "beta-tcvae-dsprites-synth"}},
        "datasets": {"dsprites-synth": ["data.name=dsprites-synth"], "shapes3d-synth": ["data.name=shapes3d-synth"]},
        "overrides": [*SMALL_VAE, "train.steps=2"],
        "eval": {"protocol": "dlib", "metrics": ["mig", "factor_vae"], "num_train": 60, "num_test": 30,
                 "num_votes_train": 20, "num_votes_eval": 10},
        "launcher": {"kind": "local", "jobs": 2, "threads": 1},
        **extra,
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_a_2x2x2_study_runs_and_reports(tmp_path, capsys):
    path = write_study(tmp_path)
    assert main(["study", str(path)]) == 0
    study = load_study(path)
    st = status(study)
    assert len(st.done) == 8 and not st.failed and not st.todo
    res = json.loads((study.cell_dir(st.done[0]) / "results.json").read_text())
    assert res["step"] == 2 and res["protocol"] == "dlib" and "mig.mig" in res["scores"]
    capsys.readouterr()
    assert main(["study", "report", str(path)]) == 0
    out = capsys.readouterr().out
    assert "protocol dlib" in out and "| beta-tcvae |" in out
    for name in ("table.md", "table.csv", "table.tex", "scores.png"):
        assert (study.out / "report" / name).is_file()


def test_killed_midway_then_started_again_finishes_without_rerunning(tmp_path):
    path = write_study(tmp_path, seeds=[0, 1, 2], launcher={"kind": "local", "jobs": 1, "threads": 1})
    study = load_study(path)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src"))
    proc = subprocess.Popen([sys.executable, "-m", "fdae", "study", str(path)], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 600
        while len(status(study).done) < 2:
            assert proc.poll() is None and time.time() < deadline, "the study stopped or stalled"
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the whole process group: the study and its running cell
        proc.wait()
    first = status(study)
    assert 2 <= len(first.done) < 12
    stamps = {c.key: (study.cell_dir(c) / "results.json").stat().st_mtime_ns for c in first.done}
    assert main(["study", str(path)]) == 0
    assert len(status(study).done) == 12
    for c in first.done:  # finished cells were not run again
        assert (study.cell_dir(c) / "results.json").stat().st_mtime_ns == stamps[c.key]


def test_slurm_path_through_submitits_local_executor(tmp_path):
    pytest.importorskip("submitit")
    path = write_study(tmp_path, seeds=[0], methods={"beta-vae": {"preset": "beta-vae-dsprites-synth"}},
                       datasets={"dsprites-synth": ["data.name=dsprites-synth"]},
                       launcher={"kind": "slurm", "cluster": "local", "partition": "fake-partition", "time_min": 10,
                                 "gpus_per_job": 0, "cpus_per_task": 1})
    assert main(["study", str(path)]) == 0
    study = load_study(path)
    assert len(status(study).done) == 1
    assert list((study.out / "slurm").glob("*/*_submitted.pkl"))  # submitit's own job folders


def test_slurm_restart_leaves_a_still_running_job_alone(tmp_path, capsys):
    """Started again while an earlier invocation's job still runs a cell, the study waits for
    that job instead of submitting the cell a second time."""
    pytest.importorskip("submitit")
    path = write_study(tmp_path, seeds=[0, 1], methods={"beta-vae": {"preset": "beta-vae-dsprites-synth"}},
                       datasets={"dsprites-synth": ["data.name=dsprites-synth"]},
                       launcher={"kind": "slurm", "cluster": "local", "time_min": 10, "gpus_per_job": 0,
                                 "cpus_per_task": 1})
    study = load_study(path)
    from fdae.study.cell import write_spec

    earlier = study.cells()[0]
    d = study.cell_dir(earlier)
    d.mkdir(parents=True)
    spec = write_spec(d, earlier.to_dict(), dict(study.eval), "cpu")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src"), OMP_NUM_THREADS="1")
    # the earlier job: the cell running in its own process, whose pid is the local cluster's job id
    # it starts training only once the new invocation has submitted its jobs, so it is still
    # running when the study looks at it, however slow the machine
    go = tmp_path / "go"
    script = f'while [ ! -e "{go}" ]; do sleep 0.05; done; exec "{sys.executable}" -m fdae.study.cell "{spec}"'
    with open(d / "log.txt", "ab") as log:
        proc = subprocess.Popen(["sh", "-c", script], env=env, stdout=log, stderr=subprocess.STDOUT)
    (d / "slurm_job.txt").write_text(f"{proc.pid}\n")

    def release():
        while not list((study.out / "slurm").glob("*/*_submitted.pkl")) and proc.poll() is None:
            time.sleep(0.05)
        go.touch()

    threading.Thread(target=release, daemon=True).start()
    try:
        assert main(["study", str(path)]) == 0
    finally:
        go.touch()
        proc.wait()
    assert proc.returncode == 0
    out = capsys.readouterr().out
    assert len(status(study).done) == 2
    assert "submitted 1 jobs" in out and f"still queued or running: {earlier.key}" in out
    assert (d / "slurm_job.txt").read_text().strip() == str(proc.pid)  # its job was not replaced
    assert len(list((study.out / "slurm").glob("*/*_submitted.pkl"))) == 1


def test_a_slurm_job_whose_state_cannot_be_read_counts_as_active(tmp_path, monkeypatch):
    """Never two jobs on one cell: without an answer from sacct, squeue decides; without
    either, the job counts as still active (it is waited for, not submitted again)."""
    pytest.importorskip("submitit")
    from fdae.study.runner import _job_active

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))  # no sacct, no squeue
    assert _job_active("4242", "slurm", tmp_path / "%j")
    squeue = bin_dir / "squeue"
    for printed, active in (("RUNNING", True), ("PENDING", True), ("", False)):
        squeue.write_text(f"#!/bin/sh\necho '{printed}'\n" if printed else "#!/bin/sh\nexit 0\n")
        squeue.chmod(0o755)
        assert _job_active("4242", "slurm", tmp_path / "%j") is active, printed


def test_a_failed_cell_is_reported_and_retried_on_request(tmp_path, capsys):
    path = write_study(tmp_path, seeds=[0], methods={"beta-vae": {"preset": "beta-vae-dsprites-synth"}},
                       datasets={"dsprites-synth": ["data.name=dsprites-synth"]})
    study = load_study(path)
    cell = study.cells()[0]
    d = study.cell_dir(cell)
    d.mkdir(parents=True)
    (d / "failed.json").write_text(json.dumps({"error": "earlier crash"}))
    assert main(["study", str(path)]) == 1
    assert "failed before: " + cell.key in capsys.readouterr().out
    assert main(["study", str(path), "--retry-failed"]) == 0
    assert (d / "results.json").is_file() and not (d / "failed.json").exists()


def test_report_mean_and_std_equal_a_hand_computation(tmp_path):
    path = write_study(tmp_path, seeds=[0, 1, 2])
    study = load_study(path)
    values = {}
    rng = np.random.RandomState(0)
    for cell in study.cells():
        v = {"mig.mig": float(rng.rand()), "factor_vae.eval_accuracy": float(rng.rand())}
        values[cell.key] = v
        d = study.cell_dir(cell)
        d.mkdir(parents=True)
        (d / "results.json").write_text(json.dumps({"cell": cell.to_dict(), "protocol": "dlib", "dci_mode": "exact",
                                                    "scores": v}))
    rep = collect(study)
    keys = [c.key for c in study.cells() if c.method == "beta-vae" and c.dataset == "shapes3d-synth"]
    migs = [values[k]["mig.mig"] for k in keys]
    mean = sum(migs) / 3
    std = math.sqrt(sum((x - mean) ** 2 for x in migs) / 2)
    got = rep.rows[("beta-vae", "shapes3d-synth")].mean_std("mig")
    assert got == pytest.approx((mean, std), abs=1e-12)
    assert f"{mean:.3f} ± {std:.3f}" in markdown(rep)
    assert f"{mean:.6f},{std:.6f},3" in csv_text(rep)
    assert rf"{mean:.3f} $\pm$ {std:.3f}" in latex(rep)
    # quoted rows stay apart from measured ones
    ref = tmp_path / "ref.yaml"
    ref.write_text(yaml.safe_dump({"source": "Paper X, Table 2", "protocol": "paper",
                                   "rows": [{"method": "FDAE", "dataset": "shapes3d", "mig": 0.473}]}))
    from fdae.study.report import load_reference

    rep.quoted = load_reference(ref)
    md = markdown(rep)
    assert md.index("Quoted, not measured here: Paper X") > md.index("| beta-tcvae |")
    assert "quoted: Paper X, Table 2" in csv_text(rep)


def test_bad_study_files_are_one_clear_error(tmp_path):
    with pytest.raises(FdaeError, match="not found"):
        load_study(tmp_path / "nope.yaml")
    path = write_study(tmp_path, overrides=["method.no_such_field=1"])
    with pytest.raises(FdaeError, match="cell beta-t?c?vae__dsprites-synth__seed0: .*method.no_such_field"):
        load_study(path)
    path = write_study(tmp_path, eval={"dci": "approximate"})
    with pytest.raises(FdaeError, match="eval.dci"):
        load_study(path)
