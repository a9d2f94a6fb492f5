"""The trainer end to end on a CPU: it learns, resumes exactly, stops cleanly."""

from __future__ import annotations

import signal

import numpy as np
import pytest
import torch

from fdae.cli import main
from fdae.errors import FdaeError
from fdae.train.checkpoint import list_checkpoints, load_run
from fdae.train.logging import read_jsonl
from fdae.train.loop import StepClock, TrainingDiverged, train

from _train_helpers import FDAE_TINY, interrupt_at, params_of, tiny_cfg



def _window_means(run_dir, k):
    losses = [r["loss"] for r in read_jsonl(run_dir / "metrics.jsonl")]
    return float(np.mean(losses[:k])), float(np.mean(losses[-k:])), losses


@torch.no_grad()
def _held_out_loss(method, dataset, n=32):
    """The EDM loss of a fixed batch with fixed noise: comparable between two weights."""
    images, _ = dataset.sample_batch(n, torch.Generator().manual_seed(123), "cpu")
    method.eval()
    vals = [method.loss(images, generator=torch.Generator().manual_seed(7 + i))["diffusion"] for i in range(4)]
    return float(torch.stack(vals).mean())


@pytest.mark.parametrize("preset", ["diffae", "fdae"])
def test_tiny_model_lowers_its_loss(tmp_path, preset):
    steps = 60
    extra = ["train.batch_size=4", f"train.steps={steps}", "train.log_every=1", "train.ckpt_every=0",
             "optim.name=adam", "optim.lr=2e-3", "train.ema_decay=null"]
    cfg = tiny_cfg(*extra, preset=FDAE_TINY) if preset == "fdae" else tiny_cfg(*extra)
    cfg.data.name = "shapes3d-synth"
    result = train(cfg, tmp_path / "run", progress=False)
    assert result.step == steps and result.reason == "done" and result.skipped_steps == 0
    first, last, losses = _window_means(tmp_path / "run", 15)
    assert len(losses) == steps and all(np.isfinite(losses))
    assert last < 0.95 * first, (first, last)  # noisy per-step losses: a mild margin
    # The trained weights beat the initial ones on a held-out batch with the same noise.
    trained = load_run(tmp_path / "run", use_ema=False)
    from fdae.methods import build_method
    from fdae.train.loop import INIT
    from fdae.train.rng import derive_seed

    torch.manual_seed(derive_seed(cfg.seed, 0, INIT))
    initial = build_method(cfg, trained.dataset.num_channels, trained.dataset.image_size)
    after, before = _held_out_loss(trained.method, trained.dataset), _held_out_loss(initial, trained.dataset)
    assert after < 0.9 * before, (before, after)
    if preset == "fdae":
        rec = read_jsonl(tmp_path / "run" / "metrics.jsonl")[-1]
        assert {"diffusion", "content_decorrelation", "mask_entropy", "loss", "grad_norm"} <= set(rec)


def _resume_cfg(*extra):
    return tiny_cfg("data.name=dsprites-synth", "train.batch_size=4", "train.steps=8", "train.log_every=1",
                    "train.ckpt_every=0", "train.ema_decay=0.9", *extra)


def test_resume_after_sigint_equals_uninterrupted(tmp_path, monkeypatch):
    full = train(_resume_cfg(), tmp_path / "full", progress=False)

    # Interrupt the second run with SIGINT during step 3 (sent from inside the loop).
    interrupt_at(monkeypatch, 3)
    part = train(_resume_cfg(), tmp_path / "part", progress=False)
    assert part.reason == "signal" and part.step == 3
    assert [s for s, _ in list_checkpoints(tmp_path / "part")] == [3]
    monkeypatch.undo()
    # SIGINT handling is restored after the run.
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler

    rest = train(_resume_cfg(), tmp_path / "part", resume=True, progress=False)
    assert rest.step == 8 and rest.reason == "done"
    a = read_jsonl(tmp_path / "full" / "metrics.jsonl")
    b = read_jsonl(tmp_path / "part" / "metrics.jsonl")
    assert [r["step"] for r in b] == list(range(1, 9))
    assert [r["loss"] for r in a] == [r["loss"] for r in b]  # exactly equal
    pa, pb = params_of(full.checkpoint), params_of(rest.checkpoint)
    for k in pa:
        assert torch.equal(pa[k], pb[k]), k
    ea = torch.load(full.checkpoint, weights_only=True)["ema"]["params"]
    eb = torch.load(rest.checkpoint, weights_only=True)["ema"]["params"]
    assert all(torch.equal(ea[k], eb[k]) for k in ea)


def test_time_limit_stops_with_checkpoint_and_resumes(tmp_path):
    # A step clock of 10 s per step: a 0.5-minute limit ends the session after step 3 on
    # any machine (3 x 10 s >= 30 s), and the run records 3 x 10 s of training.
    cfg = _resume_cfg("train.time_limit_min=0.5", "train.steps=8")
    res = train(cfg, tmp_path / "run", progress=False, clock=StepClock(10.0))
    assert res.reason == "time_limit" and res.step == 3 and res.checkpoint.is_file()
    assert [s for s, _ in list_checkpoints(tmp_path / "run")] == [3]
    assert res.minutes == pytest.approx(0.5, rel=1e-12)
    res = train(cfg, tmp_path / "run", resume=True, progress=False, clock=StepClock(10.0))  # 3 more
    assert res.reason == "time_limit" and res.step == 6 and res.minutes == pytest.approx(1.0, rel=1e-12)
    cfg.train.time_limit_min = None
    res = train(cfg, tmp_path / "run", resume=True, progress=False, clock=StepClock(10.0))
    assert res.reason == "done" and res.step == 8 and res.minutes == pytest.approx(8 / 6, rel=1e-12)
    assert [r["minutes"] for r in read_jsonl(tmp_path / "run" / "metrics.jsonl")] == pytest.approx(
        [s / 6 for s in range(1, 9)], rel=1e-12)


def test_an_absurd_learning_rate_stops_at_once_and_saves_no_broken_weights(tmp_path):
    # lr=1e30 turns the first update into weights near 1e30 (finite, useless); the run
    # stops at that step and writes no checkpoint of them.
    cfg = _resume_cfg("optim.name=adam", "optim.lr=1e30", "train.max_bad_steps=3", "train.steps=20",
                      "train.ckpt_every=1")
    with pytest.raises(TrainingDiverged) as err:
        train(cfg, tmp_path / "run", progress=False)
    msg = str(err.value)
    assert "training stopped at step 1" in msg and "learning rate is likely too high" in msg and "optim.lr" in msg
    assert "No checkpoint was written" in msg
    assert list_checkpoints(tmp_path / "run") == []


def test_cli_train_sample_and_user_errors(tmp_path, capsys):
    run = tmp_path / "cli"
    rc = main(["train", "--config", str(_cfg_file(tmp_path)), "train.steps=2", "--run-dir", str(run),
               "--no-progress"])
    assert rc == 0 and (run / "config.yaml").is_file() and list_checkpoints(run)
    # Resolved config written next to the checkpoints, with the override applied.
    assert "steps: 2" in (run / "config.yaml").read_text()
    out = tmp_path / "grid.png"
    assert main(["sample", str(run), "--steps", "2", "--n", "3", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "dsprites-synth" in text and out.is_file()
    from PIL import Image

    w, h = Image.open(out).size
    assert w > 2 * 64 and h >= 64

    # A new run into a directory that already has checkpoints.
    rc = main(["train", "--config", str(_cfg_file(tmp_path)), "--run-dir", str(run), "--no-progress"])
    assert rc == 2 and "already holds checkpoints" in capsys.readouterr().err
    # Resuming something that is not a run directory.
    (tmp_path / "empty").mkdir()
    rc = main(["train", "--resume", str(tmp_path / "empty")])
    err = capsys.readouterr().err
    assert rc == 2 and "not an fdae run directory" in err and "Traceback" not in err
    assert main(["sample", str(tmp_path / "empty")]) == 2
    # Missing config file; bad key; bad value.
    assert main(["train", "--config", str(tmp_path / "nope.yaml")]) == 2
    assert "config file not found" in capsys.readouterr().err
    assert main(["train", "--config", str(_cfg_file(tmp_path)), "train.stepz=3"]) == 2
    assert "train.stepz" in capsys.readouterr().err
    assert main(["train", "--config", str(_cfg_file(tmp_path)), "train.precision=fp16"]) == 2
    assert "fp32" in capsys.readouterr().err
    assert main(["train"]) == 2
    assert "--config" in capsys.readouterr().err
    # Resuming a finished run with more steps continues it.
    assert main(["train", "--resume", str(run), "train.steps=3", "--no-progress"]) == 0
    assert [s for s, _ in list_checkpoints(run)][-1] == 3


def test_nan_stop_message_on_the_cli(tmp_path, capsys):
    rc = main(["train", "--config", str(_cfg_file(tmp_path)), "optim.name=adam", "optim.lr=1e30",
               "train.max_bad_steps=2", "train.steps=10", "--run-dir", str(tmp_path / "nan"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "learning rate is likely too high" in err and "Traceback" not in err


def test_periodic_evaluation_and_images(tmp_path, monkeypatch):
    pytest.importorskip("fdae.metrics")
    import fdae.train.logging as tlog

    cfg = _resume_cfg("train.steps=2", "train.eval_every=2", "train.image_every=2", "train.image_steps=2",
                      "eval.protocol=dlib", "eval.metrics=[mig]", "eval.num_train=40", "eval.num_test=20")
    monkeypatch.setattr(tlog, "_tensorboard_writer", lambda run_dir: None, raising=False)
    train(cfg, tmp_path / "run", progress=False, tensorboard=False, clock=StepClock(3.0))
    evals = read_jsonl(tmp_path / "run" / "eval.jsonl")
    assert len(evals) == 1 and evals[0]["step"] == 2 and "mig" in evals[0]["metrics"]
    assert evals[0]["minutes"] == pytest.approx(2 * 3.0 / 60, rel=1e-12)  # training time, evaluation excluded
    assert list((tmp_path / "run" / "images").glob("reconstruction_*.png"))


def test_tensorboard_scalars_when_installed(tmp_path):
    pytest.importorskip("tensorboard")
    cfg = _resume_cfg("train.steps=2", "train.image_every=2", "train.image_steps=2")
    train(cfg, tmp_path / "run", progress=False)
    assert list((tmp_path / "run" / "tb").glob("events.out.tfevents.*"))


def _cfg_file(tmp_path):
    from fdae.config import save_config

    path = tmp_path / "tiny.yaml"
    if not path.exists():
        save_config(_resume_cfg("train.steps=2"), path)
    return path


def test_bad_batch_split_is_a_user_error(tmp_path):
    with pytest.raises(FdaeError, match="grad_accum"):
        tiny_cfg("train.batch_size=5", "train.grad_accum=2")


def test_skipped_step_leaves_no_nan_in_batchnorm_statistics(tmp_path, monkeypatch):
    # From the third batch on the data is NaN: those steps are skipped, and the encoder's
    # BatchNorm running statistics (written by the forward pass) must be restored too.
    from fdae.data.dsprites_synth import DSpritesSynth

    original = DSpritesSynth.sample_batch
    calls = {"n": 0}

    def poisoned(self, batch_size, generator, device=None):
        images, factors = original(self, batch_size, generator, device)
        calls["n"] += 1
        return (images * float("nan") if calls["n"] > 2 else images), factors

    monkeypatch.setattr(DSpritesSynth, "sample_batch", poisoned)
    cfg = _resume_cfg("train.max_bad_steps=2", "train.steps=10")
    with pytest.raises(TrainingDiverged):
        train(cfg, tmp_path / "run", progress=False)
    data = torch.load(list_checkpoints(tmp_path / "run")[-1][1], weights_only=True)
    stats = {k: v for k, v in data["model"].items() if "running_" in k}
    assert stats, "the encoder has BatchNorm running statistics"
    assert all(torch.isfinite(v).all() for v in stats.values())
    monkeypatch.setattr(DSpritesSynth, "sample_batch", original)
    loaded = load_run(tmp_path / "run", use_ema=False)
    images = loaded.dataset.images(np.zeros((2, loaded.dataset.num_factors), dtype=np.int64))
    assert torch.isfinite(loaded.method.encode(images)).all()
