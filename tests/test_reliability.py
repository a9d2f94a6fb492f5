"""A run directory nothing can corrupt or silently lose (issue 14), fault by fault:
two trainers on one directory, kill -9 in the middle of a checkpoint write, a flipped
bit, a torn log line, a full disk, absurd learning rates, impossible values, failed
starts, a resume of a finished run. Each test reproduces the fault for real where the
platform allows it (real processes, SIGKILL, /dev/full) and simulates it otherwise."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from fdae.cli import main, python_module_command
from fdae.config import save_config
from fdae.errors import FdaeError
from fdae.train import checkpoint as ck
from fdae.train.lock import RunLock
from fdae.train.logging import read_jsonl, truncate_jsonl

from _train_helpers import FDAE_TINY, tiny_cfg

HANDSHAKE_LIMIT_S = 300.0  # generous: a busy 2-core machine imports torch slowly


def _cfg(*extra):
    return tiny_cfg("data.name=dsprites-synth", "train.batch_size=4", "train.steps=4", "train.log_every=1",
                    "train.ckpt_every=2", "train.keep_last=3", "train.ema_decay=0.9", "eval.num_train=60",
                    "eval.num_test=30", "eval.num_votes_train=6", "eval.num_votes_eval=4", "eval.batch_size=8",
                    *extra, preset=FDAE_TINY)


@pytest.fixture(scope="module")
def cfg_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cfg") / "tiny.yaml"
    save_config(_cfg(), path)
    return path


@pytest.fixture(scope="module")
def base_run(tmp_path_factory, cfg_file) -> Path:
    """A finished 4-step run with checkpoints at steps 2 and 4 (copied by each test)."""
    run = tmp_path_factory.mktemp("base") / "run"
    assert main(["train", "--config", str(cfg_file), "--run-dir", str(run), "--no-progress"]) == 0
    assert [s for s, _ in ck.list_checkpoints(run)] == [2, 4]
    return run


def _copy(run: Path, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(run, out)
    return out


def _fails(argv, capsys, *needles) -> str:
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err, err
    errors = [ln for ln in err.splitlines() if ln.startswith("fdae: error:")]
    assert len(errors) == 1, err  # one message, on one line
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def _spawn(args: list[str], log: Path, **env_extra: str) -> subprocess.Popen:
    """`python -m fdae ARGS` in a child process (one thread: runs compare bit for bit)."""
    cmd, env = python_module_command("fdae", *args)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", **env_extra)
    for key in ("FDAE_TEST_KILL_DURING_WRITE", "FDAE_TEST_PAUSE_AFTER_STEP"):
        if key not in env_extra:
            env.pop(key, None)
    with open(log, "w") as fh:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=fh)


def _wait_for(path: Path, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + HANDSHAKE_LIMIT_S
    while not path.exists():
        assert proc.poll() is None, f"the child ended early ({proc.returncode}): {log.read_text()}"
        assert time.monotonic() < deadline, "the child never reached its test hook"
        time.sleep(0.05)


def _all_finite(path: Path) -> bool:
    data = torch.load(path, map_location="cpu", weights_only=True)
    tensors = list(data["model"].values()) + list((data.get("ema") or {}).get("params", {}).values())
    return all(torch.isfinite(t).all() for t in tensors if t.is_floating_point())


# ----------------------------------------------------------------- 1. one trainer per run
def test_a_second_trainer_or_resume_stops_at_once_naming_the_holder(tmp_path, cfg_file, capsys):
    """Two real processes: a trainer paused (by a test hook) after step 1 holds the run;
    a second `fdae train` into it and a `--resume` of it both stop with one message."""
    run, hs = tmp_path / "run", tmp_path / "hs"
    hs.mkdir()
    log = tmp_path / "a.log"
    a = _spawn(["train", "--config", str(cfg_file), "--run-dir", str(run), "--no-progress"], log,
               FDAE_TEST_PAUSE_AFTER_STEP="1", FDAE_TEST_HANDSHAKE=str(hs))
    try:
        _wait_for(hs / "paused", a, log)
        holder = f"process {a.pid} on host {socket.gethostname()}"
        _fails(["train", "--config", str(cfg_file), "seed=1", "--run-dir", str(run), "--no-progress"], capsys,
               "is in use by", holder)
        _fails(["train", "--resume", str(run), "--no-progress"], capsys, "is in use by", holder)
        (hs / "go").touch()
        assert a.wait(timeout=HANDSHAKE_LIMIT_S) == 0, log.read_text()
    finally:
        if a.poll() is None:
            a.kill()
            a.wait()
    # The first run is whole: one curve, its own seed, no lock left behind.
    assert [r["step"] for r in read_jsonl(run / "metrics.jsonl")] == [1, 2, 3, 4]
    assert torch.load(ck.latest_checkpoint(run), weights_only=True)["config"]["seed"] == 0
    assert not (run / ".lock").exists()


def test_the_lock_survives_a_holder_killed_with_sigkill(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    code = ("import sys, time; from fdae.train.lock import RunLock; RunLock(sys.argv[1]).acquire(); "
            "print('held', flush=True); time.sleep(600)")
    cmd, env = python_module_command("fdae")  # for its PYTHONPATH
    holder = subprocess.Popen([sys.executable, "-c", code, str(run)], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(FdaeError, match=f"in use by process {holder.pid} on host"):
            RunLock(run).acquire()
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    assert (run / ".lock").exists()  # the dead holder's note stays behind ...
    lock = RunLock(run).acquire()  # ... but the kernel released its lock: taken over
    assert "no longer holds it" in capsys.readouterr().err
    assert json.loads((run / ".lock").read_text())["pid"] == os.getpid()
    lock.release()
    assert not (run / ".lock").exists()


# ------------------------------------------------- 2-3. kill -9 mid-write, leftovers, torn line
def test_kill_9_during_a_checkpoint_write_then_resume_equals_an_uninterrupted_run(tmp_path, cfg_file):
    full, part = tmp_path / "full", tmp_path / "part"
    train = ["train", "--config", str(cfg_file), "train.steps=6", "--no-progress"]
    logs = [tmp_path / f"{k}.log" for k in ("full", "killed", "resumed")]
    a = _spawn([*train, "--run-dir", str(full)], logs[0])
    b = _spawn([*train, "--run-dir", str(part)], logs[1], FDAE_TEST_KILL_DURING_WRITE="step_00000004.pt")
    assert a.wait() == 0, logs[0].read_text()
    assert b.wait() == -signal.SIGKILL, logs[1].read_text()
    folder = ck.checkpoint_dir(part)
    leftovers = [p for p in folder.iterdir() if ck.TEMPORARY.match(p.name)]
    assert len(leftovers) == 1 and leftovers[0].stat().st_size > 0  # half a checkpoint
    assert [s for s, _ in ck.list_checkpoints(part)] == [2]
    assert (part / ".lock").exists()  # a stale note of the killed trainer
    assert [r["step"] for r in read_jsonl(part / "metrics.jsonl")] == [1, 2, 3, 4]
    with open(part / "metrics.jsonl", "a") as fh:  # and a line torn by the kill
        fh.write('{"step": 5, "loss": 0.12')

    c = _spawn(["train", "--resume", str(part), "--no-progress"], logs[2])
    assert c.wait() == 0, logs[2].read_text()
    said = logs[2].read_text()
    assert "removed 1 temporary checkpoint file" in said and "no longer holds it" in said
    assert "torn last line" in said and "after step 2" in said
    assert not [p for p in folder.iterdir() if ck.TEMPORARY.match(p.name)]
    a_log, b_log = read_jsonl(full / "metrics.jsonl"), read_jsonl(part / "metrics.jsonl")
    assert [r["step"] for r in b_log] == list(range(1, 7))
    assert [r["loss"] for r in a_log] == [r["loss"] for r in b_log]
    da = torch.load(ck.latest_checkpoint(full), weights_only=True)
    db = torch.load(ck.latest_checkpoint(part), weights_only=True)
    for part_name in ("model", "optimizer"):
        flat_a, flat_b = _tensors(da[part_name]), _tensors(db[part_name])
        assert len(flat_a) == len(flat_b) and all(torch.equal(x, y) for x, y in zip(flat_a, flat_b)), part_name
    assert all(torch.equal(da["ema"]["params"][k], db["ema"]["params"][k]) for k in da["ema"]["params"])


def _tensors(tree) -> list[torch.Tensor]:
    if isinstance(tree, torch.Tensor):
        return [tree]
    if isinstance(tree, dict):
        return [t for v in tree.values() for t in _tensors(v)]
    if isinstance(tree, (list, tuple)):
        return [t for v in tree for t in _tensors(v)]
    return []


def test_torn_and_damaged_log_lines_are_dropped_with_a_note(tmp_path):
    log = tmp_path / "metrics.jsonl"
    log.write_text('{"step": 1}\n{"step": 2}\nnot json\n{"step": 3}\n{"step": 4, "lo')
    notes: list[str] = []
    assert [r["step"] for r in read_jsonl(log, notes.append)] == [1, 2, 3]
    assert "line 3" in notes[0] and "torn last line" in notes[1]
    truncate_jsonl(log, 2, notes.append)
    assert log.read_text() == '{"step": 1}\n{"step": 2}\n'
    assert "dropped 1 record(s) after step 2" in notes[-1]


# ---------------------------------------------------------------- 4. integrity
def _flip_exponent_bit(path: Path) -> float:
    """Flip the top exponent bit of one small weight in the file's tensor data (a value
    like 0.01 becomes ~1e36), as a failing disk or copy would; returns the old value."""
    data = torch.load(path, weights_only=True)
    t = max((v for v in data["model"].values() if v.dtype == torch.float32), key=lambda v: v.numel()).reshape(-1)
    i = int(((t.abs() > 1e-3) & (t.abs() < 1.0))[: t.numel() - 4].nonzero()[0])
    raw = bytearray(path.read_bytes())
    needle = t[i:i + 4].numpy().tobytes()
    at = raw.find(needle)
    assert at >= 0 and raw.find(needle, at + 1) < 0
    raw[at + 3] ^= 0x40
    path.write_bytes(bytes(raw))
    flipped = torch.load(path, weights_only=True)  # torch itself loads it without a word ...
    values = torch.cat([v.reshape(-1) for v in flipped["model"].values() if v.dtype == torch.float32])
    assert torch.isfinite(values).all() and values.abs().max() > 1e30  # ... finite, so only a checksum sees it
    return float(t[i])


def test_a_flipped_bit_is_named_and_resume_falls_back_only_when_asked(base_run, tmp_path, capsys):
    run = _copy(base_run, tmp_path)
    newest = ck.checkpoint_path(run, 4)
    _flip_exponent_bit(newest)
    config_before = (run / "config.yaml").read_bytes()
    # Every reader names the file and the intact previous checkpoint.
    _fails(["sample", str(run), "--n", "1", "--steps", "1", "--out", str(tmp_path / "s.png")], capsys,
           str(newest), "checksum", str(ck.checkpoint_path(run, 2)), "pass that file")
    _fails(["eval", str(run), "--device", "cpu", "--quiet"], capsys, "checksum")
    # --resume stops and offers the fallback; nothing changes.
    _fails(["train", "--resume", str(run), "train.steps=6", "--no-progress"], capsys, "checksum",
           "--resume-previous")
    assert newest.is_file() and (run / "config.yaml").read_bytes() == config_before
    # Asked, it continues from step 2 and keeps the damaged file aside.
    assert main(["train", "--resume", str(run), "train.steps=6", "--resume-previous", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "as asked (--resume-previous)" in err
    assert (newest.parent / "step_00000004.pt.corrupt").is_file()
    assert [s for s, _ in ck.list_checkpoints(run)] == [2, 4, 6]
    assert ck.load_checkpoint(ck.checkpoint_path(run, 6))["step"] == 6
    assert [r["step"] for r in read_jsonl(run / "metrics.jsonl")] == list(range(1, 7))


def test_a_checkpoint_without_checksum_still_loads_and_says_so_once(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(ck, "_UNCHECKED_SAID", [])
    path = ck.save_checkpoint({"step": 1, "model": {"w": torch.ones(3)}, "config": {}}, ck.checkpoint_path(tmp_path, 1))
    data = torch.load(path, weights_only=True)
    assert data.pop("integrity")["tensors"] == 1
    torch.save(data, path)  # as an older fdae wrote it
    for _ in range(2):
        assert torch.equal(ck.load_checkpoint(path)["model"]["w"], torch.ones(3))
    assert capsys.readouterr().err.count("has no checksum") == 1


def test_non_finite_weights_in_an_old_checkpoint_are_refused(tmp_path):
    ck.save_checkpoint({"step": 1, "model": {"w": torch.ones(3)}, "config": {}}, ck.checkpoint_path(tmp_path, 1))
    ck.save_checkpoint({"step": 2, "model": {"w": torch.tensor([1.0, float("nan"), 2.0])}, "config": {}},
                       ck.checkpoint_path(tmp_path, 2))
    with pytest.raises(ck.CheckpointDamaged, match="1 of its weight values are NaN or infinite") as err:
        ck.load_checkpoint(ck.checkpoint_path(tmp_path, 2))
    assert err.value.previous == ck.checkpoint_path(tmp_path, 1)


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("kind", ["legacy_torch", "raw_pickle", "zip"])
def test_a_malicious_pickle_is_called_what_it_is_and_runs_nothing(tmp_path, kind):
    import pickle

    marker, path = tmp_path / "pwned", tmp_path / "model.pt"
    if kind == "legacy_torch":
        torch.save({"a": _Evil(marker)}, path, _use_new_zipfile_serialization=False)
    elif kind == "raw_pickle":
        path.write_bytes(pickle.dumps(_Evil(marker)))
    else:
        torch.save({"a": _Evil(marker)}, path)
    with pytest.raises(FdaeError) as err:
        ck.load_checkpoint(path)
    msg = str(err.value)
    if kind == "zip":
        assert "refuses to load" in msg and "posix.system" in msg and "nothing in it was run" in msg
    else:
        assert "legacy-format pickle file" in msg and "refuses to load" in msg and "torch.save archive" not in msg
    assert msg.rstrip().endswith(".") and "Weights only load failed" not in msg
    assert not marker.exists()


def test_a_truncated_checkpoint_offers_the_previous_one(base_run, tmp_path):
    run = _copy(base_run, tmp_path)
    newest = ck.checkpoint_path(run, 4)
    newest.write_bytes(newest.read_bytes()[:5000])
    with pytest.raises(ck.CheckpointDamaged) as err:
        ck.load_checkpoint(newest)
    assert "truncated or corrupt" in str(err.value) and err.value.previous == ck.checkpoint_path(run, 2)
    assert str(err.value).endswith("is intact.")


# ------------------------------------------------------- 5. write errors, one line each
@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (a device that is always full)")
def test_a_full_disk_during_a_checkpoint_write_is_one_line_and_loses_nothing(base_run, tmp_path, capsys):
    """A real ENOSPC from the kernel: the checkpoint's temporary file is /dev/full."""
    run = _copy(base_run, tmp_path)
    tmp = ck.checkpoint_dir(run) / f".step_00000006.pt.tmp-{os.getpid()}"
    tmp.symlink_to("/dev/full")
    line = _fails(["train", "--resume", str(run), "train.steps=6", "--no-progress"], capsys,
                  "no space left", "step_00000006.pt", "fdae train --resume")
    assert "OSError" not in line
    assert not tmp.is_symlink() and [s for s, _ in ck.list_checkpoints(run)] == [2, 4]
    assert not (run / ".lock").exists()
    assert main(["train", "--resume", str(run), "train.steps=6", "--no-progress"]) == 0  # once there is room


@pytest.mark.parametrize("code, words", [
    (errno.ENOSPC, ["no space left"]),
    (errno.EROFS, ["read-only filesystem"]),
    (errno.EACCES, ["no permission"]),
])
@pytest.mark.parametrize("target", ["checkpoint", "metrics"])
def test_simulated_write_errors_are_one_line_naming_the_path_and_fix(base_run, tmp_path, capsys, monkeypatch,
                                                                    code, words, target):
    import builtins

    import fdae.train.checkpoint as ck_mod
    import fdae.train.logging as log_mod

    run = _copy(base_run, tmp_path)
    real_open = builtins.open

    def failing_open(file, mode="r", *args, **kwargs):
        if "w" in mode or "a" in mode:
            raise OSError(code, os.strerror(code), str(file))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(ck_mod if target == "checkpoint" else log_mod, "open", failing_open, raising=False)
    name = "step_00000006.pt" if target == "checkpoint" else "metrics.jsonl"
    _fails(["train", "--resume", str(run), "train.steps=6", "train.ckpt_every=2", "--no-progress"], capsys,
           name, *words)
    assert [s for s, _ in ck.list_checkpoints(run)] == [2, 4] and not (run / ".lock").exists()


def test_a_read_only_run_directory_is_one_line(tmp_path, cfg_file, capsys):
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders (the simulated EROFS test covers the message)")
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(0o555)
    try:
        _fails(["train", "--config", str(cfg_file), "--run-dir", str(parent / "run"), "--no-progress"], capsys,
               "no permission", str(parent / "run"))
    finally:
        parent.chmod(0o755)


# ---------------------------------------------- 2. absurd learning rates, impossible values
def test_lr_inf_and_impossible_values_are_refused_before_any_work(tmp_path, cfg_file, capsys):
    run = tmp_path / "run"
    for override, needles in [("optim.lr=inf", ["optim.lr", "finite number > 0", "optim.lr=1e-4"]),
                              ("optim.lr=nan", ["optim.lr"]),
                              ("seed=-1", ["'seed'", "seed=0"]),
                              ("unet.channels=0", ["unet.channels", ">= 1"]),
                              ("unet.channels=-2", ["unet.channels"]),
                              ("edm.rho=0", ["edm.rho", "> 0"]),
                              ("edm.sigma_min=-1", ["edm.sigma_min", "> 0"])]:
        _fails(["train", "--config", str(cfg_file), override, "--run-dir", str(run), "--no-progress"], capsys,
               *needles)
        assert not run.exists()


def test_sampling_a_run_whose_config_holds_an_impossible_value_is_one_message(base_run, tmp_path, capsys):
    """An older fdae accepted edm.rho=0 and edm.sigma_min=-1 (then divided by zero or drew NaN images)."""
    run = _copy(base_run, tmp_path)
    path = ck.latest_checkpoint(run)
    data = torch.load(path, weights_only=True)
    data.pop("integrity")
    data["config"]["edm"]["rho"] = 0.0
    torch.save(data, path)
    _fails(["sample", str(run), "--n", "1", "--steps", "1", "--out", str(tmp_path / "s.png")], capsys, "edm.rho")
    assert not (tmp_path / "s.png").exists()


def test_lr_1e6_never_saves_blown_up_weights_and_a_sane_resume_continues(base_run, tmp_path, capsys):
    run = _copy(base_run, tmp_path)
    line = _fails(["train", "--resume", str(run), "optim.lr=1e6", "train.steps=30", "train.max_bad_steps=5",
                   "train.ckpt_every=1", "--no-progress"], capsys,
                  "training stopped at step 5", "learning rate is likely too high", str(ck.checkpoint_path(run, 4)),
                  "optim.lr=")
    assert "blew the weights up" in line or "non-finite" in line
    assert [s for s, _ in ck.list_checkpoints(run)] == [2, 4]
    assert all(_all_finite(p) for _, p in ck.list_checkpoints(run))
    assert main(["train", "--resume", str(run), "optim.lr=1e-3", "train.steps=6", "--no-progress"]) == 0
    assert [r["step"] for r in read_jsonl(run / "metrics.jsonl")] == list(range(1, 7))
    assert _all_finite(ck.checkpoint_path(run, 6))


def test_lr_1e6_from_the_start_saves_nothing(tmp_path, cfg_file, capsys):
    """The issue's command (smaller widths): stopped at step 1, no checkpoint of broken weights."""
    run = tmp_path / "run"
    _fails(["train", "--config", str(cfg_file), "train.steps=30", "train.max_bad_steps=5", "optim.lr=1e6",
            "train.ckpt_every=1", "--run-dir", str(run), "--no-progress"], capsys,
           "training stopped at step 1", "learning rate is likely too high", "No checkpoint was written")
    assert ck.list_checkpoints(run) == []


def test_the_fused_path_never_saves_broken_weights_either(tmp_path, monkeypatch):
    """Fused optimizers skip bad steps on the device and sync only at log steps; a
    checkpoint due before that log step must still refuse the broken weights."""
    from fdae.train import optim
    from fdae.train.loop import TrainingDiverged, train

    monkeypatch.setattr(optim, "supports_fused", lambda name, device: True)
    cfg = _cfg("optim.name=adam", "optim.lr=1e6", "train.steps=20", "train.log_every=10", "train.ckpt_every=1")
    with pytest.raises(TrainingDiverged, match="learning rate is likely too high"):
        train(cfg, tmp_path / "run", progress=False)
    assert ck.list_checkpoints(tmp_path / "run") == []


# ----------------------------------------------------------- 6. rough edges
def test_a_failed_start_leaves_no_run_directory_behind(tmp_path, cfg_file, capsys):
    run = tmp_path / "new" / "run"
    _fails(["train", "--config", str(cfg_file), "data.name=no-such-dataset", "--run-dir", str(run),
            "--no-progress"], capsys)
    assert not (tmp_path / "new").exists()
    mine = tmp_path / "mine"  # a folder the user made: kept, and left as it was
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    _fails(["train", "--config", str(cfg_file), "data.name=no-such-dataset", "--run-dir", str(mine),
            "--no-progress"], capsys)
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]


def test_resume_of_a_finished_run_says_so_and_changes_nothing(base_run, tmp_path, capsys):
    run = _copy(base_run, tmp_path)
    before = {p.relative_to(run): (p.stat().st_mtime_ns, p.read_bytes()) for p in run.rglob("*") if p.is_file()}
    assert main(["train", "--resume", str(run), "train.steps=3", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "has already finished" in err and "step 4" in err and "nothing changed" in err
    after = {p.relative_to(run): (p.stat().st_mtime_ns, p.read_bytes()) for p in run.rglob("*") if p.is_file()}
    assert after == before


def test_overrides_anywhere_and_a_truthful_image_message(tmp_path, cfg_file, capsys):
    tensorboard = True
    try:
        import tensorboard as _  # noqa: F401
    except ImportError:
        tensorboard = False
    run = tmp_path / "run"
    assert main(["train", "--config", str(cfg_file), "train.steps=1", "--run-dir", str(run), "seed=3",
                 "--no-progress", "train.ckpt_every=0", "train.image_every=null"]) == 0  # default: every 10 steps
    cfg = ck.run_config(run)
    assert (cfg.train.steps, cfg.seed, cfg.train.ckpt_every) == (1, 3, 0)
    err = capsys.readouterr().err
    if not tensorboard:
        assert "no image grids in this run" in err and "image grids go to" not in err
    assert not (run / "images").exists()
    run2 = tmp_path / "run2"
    assert main(["train", "--config", str(cfg_file), "--run-dir", str(run2), "--no-progress", "train.steps=2",
                 "train.image_every=2", "train.image_steps=1"]) == 0
    err = capsys.readouterr().err
    if not tensorboard:
        assert f"image grids go to {run2 / 'images'}" in err
        assert list((run2 / "images").glob("*.png"))


def test_eval_uses_the_runs_settings_and_keeps_finished_metrics_when_stopped(base_run, tmp_path, capsys,
                                                                             monkeypatch):
    import fdae.metrics.protocol as protocol

    run = _copy(base_run, tmp_path)
    real_factor_vae, real_dci = protocol.factor_vae_score, protocol.dci_arrays

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(protocol, "factor_vae_score", stopped)
    assert main(["eval", str(run), "--device", "cpu", "--quiet"]) == 130
    err = capsys.readouterr().err
    saved = run / "eval_results" / "step_00000004-paper-seed0.json"
    assert "run the same command again" in err and str(saved) in err
    partial = json.loads(saved.read_text())
    assert partial["complete"] is False and list(partial["metrics"]) == ["dci"]
    assert partial["settings"]["num_train"] == 60 and partial["settings"]["num_test"] == 30  # the run's eval:

    def not_again(*args, **kwargs):
        raise AssertionError("a finished metric was computed again")

    monkeypatch.setattr(protocol, "factor_vae_score", real_factor_vae)
    monkeypatch.setattr(protocol, "dci_arrays", not_again)
    assert main(["eval", str(run), "--device", "cpu", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "dci.disentanglement" in out and "factor_vae.eval_accuracy" in out and "mig.mig" in out
    done = json.loads(saved.read_text())
    assert done["complete"] is True and list(done["metrics"]) == ["dci", "factor_vae", "mig"]
    assert done["metrics"]["dci"] == partial["metrics"]["dci"]
    assert done["settings"]["factor_vae"]["num_train"] == 6 and done["settings"]["factor_vae"]["batch_size"] == 8
    # A flag overrides the run's setting (and writes a result of its own).
    monkeypatch.setattr(protocol, "dci_arrays", real_dci)
    assert main(["eval", str(run), "--device", "cpu", "--quiet", "--metrics", "mig", "--num-train", "40",
                 "--out", str(tmp_path / "r.json")]) == 0
    assert json.loads((tmp_path / "r.json").read_text())["settings"]["num_train"] == 40
