"""Background evaluation (eval.async_workers): same numbers as in-process, nothing lost."""

from __future__ import annotations

import torch
import pytest

from fdae.train.async_eval import AsyncEvaluator, build_encoder, encoder_state, snapshot_dir
from fdae.train.logging import read_jsonl
from fdae.train.loop import StepClock, train

from _train_helpers import FDAE_TINY, tiny_cfg

pytest.importorskip("fdae.metrics")

EVAL = ["data.name=dsprites-synth", "train.batch_size=4", "train.log_every=1", "train.ckpt_every=0",
        "train.ema_decay=0.9", "eval.protocol=paper", "eval.metrics=[mig,factor_vae]", "eval.num_train=60",
        "eval.num_test=30", "eval.num_votes_train=20", "eval.num_votes_eval=10", "eval.batch_size=8"]


def _cfg(*extra):
    return tiny_cfg(*EVAL, *extra, preset=FDAE_TINY)


def _scores(records):
    return [(r["step"], r["metrics"]) for r in records]


def test_background_evaluation_equals_in_process(tmp_path):
    sync = train(_cfg("train.steps=4", "train.eval_every=2"), tmp_path / "sync", progress=False, tensorboard=False,
                 clock=StepClock(6.0))
    bg = train(_cfg("train.steps=4", "train.eval_every=2", "eval.async_workers=1"), tmp_path / "bg",
               progress=False, tensorboard=False, clock=StepClock(6.0))
    a, b = read_jsonl(sync.run_dir / "eval.jsonl"), read_jsonl(bg.run_dir / "eval.jsonl")
    assert [r["step"] for r in a] == [2, 4] == [r["step"] for r in b]
    assert _scores(a) == _scores(b)  # the same EMA weights, encoded and scored the same way
    assert all(r.get("background") for r in b) and not any(r.get("background") for r in a)
    assert [r["minutes"] for r in a] == [r["minutes"] for r in b] == pytest.approx([0.2, 0.4], rel=1e-12)  # 6 s a step
    assert not list(snapshot_dir(bg.run_dir).iterdir())  # snapshots are removed once logged


def test_encoder_snapshot_has_no_unet_and_encodes_identically():
    from fdae.methods import build_method

    cfg = _cfg()
    torch.manual_seed(0)
    method = build_method(cfg).eval()
    state = encoder_state(method)
    assert state and not any(k.startswith("unet.") for k in state)
    rebuilt = build_encoder(cfg, state, 3, 64, torch.device("cpu"), "test")
    assert sum(p.numel() for p in rebuilt.unet.parameters()) == 0
    images = torch.rand(5, 3, 64, 64) * 2 - 1
    assert torch.equal(method.encode(images), rebuilt.encode(images))


@pytest.fixture
def trained(tmp_path):
    """(run, method, cfg, said, logged, evaluator) of a 2-step run and a fresh evaluator."""
    from fdae.train.checkpoint import load_run

    res = train(_cfg("train.steps=2"), tmp_path / "run", progress=False, tensorboard=False)
    cfg = _cfg("train.eval_every=2")
    said, logged = [], []
    ev = AsyncEvaluator(res.run_dir, cfg, 1, torch.device("cpu"), logged.append, said.append)
    return res, load_run(res.run_dir).method, cfg, said, logged, ev


def test_killed_evaluation_runs_again_on_resume(trained):
    res, method, cfg, said, logged, ev = trained
    ev.submit(method, 2, 0.5, True)
    ev.submit(method, 7, 0.9, True)  # a step past the checkpoint we will resume from
    ev.stop()  # as a crash or a signal would: the workers die, the snapshots stay
    assert logged == [] and len(list(snapshot_dir(res.run_dir).glob("*.pt"))) == 2

    # already logged: dropped, not evaluated twice
    done = AsyncEvaluator(res.run_dir, cfg, 1, torch.device("cpu"), logged.append, said.append,
                          resume_step=2, logged_steps={2})
    assert done.jobs == []
    ev.submit(method, 2, 0.5, True)
    ev.stop()

    again = AsyncEvaluator(res.run_dir, cfg, 1, torch.device("cpu"), logged.append, said.append,
                           resume_step=2, logged_steps=set())
    assert [j.step for j in again.jobs] == [2]  # step 7 belonged to a lost future
    again.drain()
    assert [r["step"] for r in logged] == [2] and logged[0]["minutes"] == 0.5 and logged[0]["ema"] is True
    assert set(logged[0]["metrics"]) == {"mig", "factor_vae"}
    assert not list(snapshot_dir(res.run_dir).glob("*.pt"))


def test_failed_worker_is_reported_and_training_goes_on(tmp_path):
    cfg = _cfg("train.eval_every=2")
    said, logged = [], []
    folder = snapshot_dir(tmp_path)
    folder.mkdir(parents=True)
    (folder / "step_00000002.pt").write_bytes(b"not a checkpoint")
    ev = AsyncEvaluator(tmp_path, cfg, 1, torch.device("cpu"), logged.append, said.append,
                        resume_step=2, logged_steps=set())
    ev.drain()
    assert logged == []
    message = [s for s in said if "failed" in s]
    assert message and "step 2" in message[0] and "checkpoint" in message[0], said
    assert not (folder / "step_00000002.pt").exists()


def test_async_workers_must_not_be_negative():
    from fdae.errors import FdaeError

    with pytest.raises(FdaeError, match="eval.async_workers"):
        _cfg("eval.async_workers=-1")


def test_worker_killed_by_a_signal_keeps_its_snapshot_and_a_written_record_is_not_redone(trained):
    import signal

    res, method, cfg, said, logged, ev = trained
    ev.submit(method, 2, 0.5, True)
    ev.jobs[0].proc.send_signal(signal.SIGTERM)  # as a scheduler's SIGTERM would, were it sent to the worker
    ev.drain()
    assert logged == [] and any("killed" in s for s in said)
    snapshot = snapshot_dir(res.run_dir) / "step_00000002.pt"
    assert snapshot.exists()

    # a worker that finished but whose record was never logged (the trainer died first):
    again = AsyncEvaluator(res.run_dir, cfg, 1, torch.device("cpu"), logged.append, said.append,
                           resume_step=2, logged_steps=set())
    again.drain()
    assert [r["step"] for r in logged] == [2]
    ev.submit(method, 2, 0.5, True)
    ev.stop()  # killed at once: the snapshot stays
    from fdae.train.async_eval import evaluate_snapshot

    record = evaluate_snapshot(snapshot)  # writes step_00000002.json next to it, as a worker does
    logged.clear()
    third = AsyncEvaluator(res.run_dir, cfg, 1, torch.device("cpu"), logged.append, said.append,
                           resume_step=2, logged_steps=set())
    assert third.jobs[0].scored
    third.drain()
    assert third.jobs == [] and [r["metrics"] for r in logged] == [record["metrics"]]
    assert not list(snapshot_dir(res.run_dir).glob("step_*"))
