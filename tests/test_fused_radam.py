"""FusedRAdam (RAdam on the fused Adam kernel) against torch.optim.RAdam: same
trajectory in both phases, skipped steps, and state dicts that move between the two."""

from __future__ import annotations

import pytest
import torch

from fdae.train.fused_radam import FusedRAdam, rho
from fdae.train.optim import build_optimizer, is_fused

from _train_helpers import tiny_cfg

SHAPES = [(7, 5), (5,), (3, 4, 3, 3)]


def _params(seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(s, generator=g)) for s in SHAPES]


def _grads(steps, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [[torch.randn(s, generator=g) * (1 + k % 3) for s in SHAPES] for k in range(steps)]


def _run(opt, params, grads, skip=()):
    for k, gs in enumerate(grads):
        for p, g in zip(params, gs):
            p.grad = g.clone()
        if isinstance(opt, FusedRAdam):
            opt.found_inf = torch.tensor(float(k in skip))
            opt.step()
        elif k not in skip:
            opt.step()
    return params


def _assert_close(a, b, rtol=2e-6):
    for x, y in zip(a, b):
        torch.testing.assert_close(x.detach(), y.detach(), rtol=rtol, atol=1e-7)


def test_rectified_phase_starts_at_step_6_for_beta2_0999():
    assert [rho(t, 0.999) > 5 for t in range(1, 8)] == [False] * 5 + [True] * 2


@pytest.mark.parametrize("wd", [0.0, 0.01])
def test_same_trajectory_as_torch_radam(wd):
    grads = _grads(40)
    p_ref = _params()
    _run(torch.optim.RAdam(p_ref, lr=1e-2, weight_decay=wd, foreach=False), p_ref, grads)
    p_new = _params()
    _run(FusedRAdam(p_new, lr=1e-2, weight_decay=wd), p_new, grads)
    _assert_close(p_new, p_ref)
    moved = max(float((a.detach() - b.detach()).abs().max()) for a, b in zip(p_new, _params()))
    assert moved > 0.1  # 40 steps of lr 1e-2 really moved the parameters


def test_skipped_steps_change_nothing_in_both_phases():
    grads = _grads(20)
    skip = {2, 9, 10}  # one un-rectified, two rectified
    p_new = _params()
    opt = FusedRAdam(p_new, lr=1e-2)
    _run(opt, p_new, grads, skip)
    p_ref = _params()
    _run(torch.optim.RAdam(p_ref, lr=1e-2, foreach=False), p_ref, grads, skip)
    _assert_close(p_new, p_ref)
    assert all(float(opt.state[p]["step"]) == 20 - len(skip) for p in p_new)


@pytest.mark.parametrize("late", [0, 1])
def test_parameters_that_join_late_keep_their_own_step_counts(late):
    """A parameter without gradients for the first steps (its own count starts later),
    first or second in the group: each parameter follows torch.optim.RAdam."""
    grads = _grads(16)
    for k in range(9):  # parameter `late` has no gradient in steps 0..8
        grads[k][late] = None

    def run(make):
        params = _params()
        opt = make(params)
        for gs in grads:
            for p, g in zip(params, gs):
                p.grad = None if g is None else g.clone()
            opt.step()
        return params, opt

    p_ref, _ = run(lambda ps: torch.optim.RAdam(ps, lr=1e-2, foreach=False))
    p_new, opt = run(lambda ps: FusedRAdam(ps, lr=1e-2))
    _assert_close(p_new, p_ref)
    assert float(opt.state[p_new[late]]["step"]) == 7 and float(opt.state[p_new[1 - late]]["step"]) == 16


def test_state_dicts_move_between_torch_radam_and_fused_radam():
    grads = _grads(16)
    p_ref = _params()
    _run(torch.optim.RAdam(p_ref, lr=1e-2, foreach=True), p_ref, grads)

    p_a = _params()
    first = torch.optim.RAdam(p_a, lr=1e-2, foreach=True)
    _run(first, p_a, grads[:4])  # still un-rectified when handed over
    second = FusedRAdam(p_a, lr=1e-2)
    second.load_state_dict(first.state_dict())
    _run(second, p_a, grads[4:12])
    third = torch.optim.RAdam(p_a, lr=1e-2, foreach=True)
    third.load_state_dict(second.state_dict())
    _run(third, p_a, grads[12:])
    _assert_close(p_a, p_ref)


def test_build_optimizer_gives_fused_radam_when_fused():
    cfg = tiny_cfg("optim.name=radam").optim
    opt = build_optimizer([torch.nn.Parameter(torch.ones(2))], cfg, torch.device("cpu"), fused=True)
    assert isinstance(opt, FusedRAdam) and is_fused(opt)
    plain = build_optimizer([torch.nn.Parameter(torch.ones(2))], cfg, torch.device("cpu"))
    assert type(plain) is torch.optim.RAdam and not is_fused(plain)


def test_trainer_fused_path_equals_plain_path(tmp_path, monkeypatch):
    """The trainer's no-sync path (fused optimizer, device-side skip flag, masked EMA),
    which CUDA takes, forced on the CPU: the same run as the plain path, including a
    step skipped for a non-finite batch."""
    import fdae.train.optim as optim
    from fdae.data import get_dataset
    from fdae.train.checkpoint import latest_checkpoint
    from fdae.train.loop import train
    from fdae.train.logging import read_jsonl

    cls = type(get_dataset("dsprites-synth"))
    original = cls.sample_batch
    calls = {"n": 0}

    def poisoned(self, *args, **kwargs):  # the 4th batch of each run is NaN
        images, rows = original(self, *args, **kwargs)
        calls["n"] += 1
        return (images * float("nan") if calls["n"] == 4 else images), rows

    monkeypatch.setattr(cls, "sample_batch", poisoned)
    cfg = tiny_cfg("data.name=dsprites-synth", "train.batch_size=4", "train.steps=9", "train.log_every=1",
                   "train.ckpt_every=0", "train.ema_decay=0.9", "optim.name=radam", "optim.lr=1e-3")
    plain = train(cfg, tmp_path / "plain", progress=False, tensorboard=False)
    calls["n"] = 0
    monkeypatch.setattr(optim, "supports_fused", lambda name, device: True)
    fused = train(cfg, tmp_path / "fused", progress=False, tensorboard=False)
    assert plain.skipped_steps == fused.skipped_steps == 1

    la, lb = read_jsonl(plain.run_dir / "metrics.jsonl"), read_jsonl(fused.run_dir / "metrics.jsonl")
    assert la[3]["loss"] is None and lb[3]["loss"] is None  # the skipped step
    del la[3], lb[3]
    assert [r["loss"] for r in la] == pytest.approx([r["loss"] for r in lb], rel=1e-5)
    ca, cb = torch.load(latest_checkpoint(plain.run_dir), weights_only=True), \
        torch.load(latest_checkpoint(fused.run_dir), weights_only=True)
    for which in ("model", "ema"):
        a = ca["model"] if which == "model" else ca["ema"]["params"]
        b = cb["model"] if which == "model" else cb["ema"]["params"]
        keys = [k for k in a if a[k].is_floating_point() and "running" not in k]
        diff = torch.cat([(a[k] - b[k]).flatten() for k in keys]).norm()
        size = torch.cat([a[k].flatten() for k in keys]).norm()
        assert float(diff / size) < 1e-5, which
    assert [float(s["step"]) for s in ca["optimizer"]["state"].values()] == \
        [float(s["step"]) for s in cb["optimizer"]["state"].values()]
