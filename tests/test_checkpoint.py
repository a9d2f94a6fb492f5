"""Checkpoint files, RNG states, EMA, the non-finite guard and the optimizers."""

from __future__ import annotations

import argparse
import os
import random

import numpy as np
import pytest
import torch

from fdae.errors import FdaeError
from fdae.train import checkpoint as ck
from fdae.train.ema import EMA
from fdae.train.guard import NonFiniteGuard
from fdae.train.optim import build_optimizer, lr_at
from fdae.train.rng import global_state, make_generator, set_global_state

from _train_helpers import tiny_cfg



def _payload(step=1):
    return {"step": step, "model": {"w": torch.arange(4.0)}, "config": {"name": "x"}}


def test_atomic_save_load_and_keep_last(tmp_path):
    for step in (1, 2, 3, 4):
        ck.save_checkpoint(_payload(step), ck.checkpoint_path(tmp_path, step))
        ck.prune_checkpoints(tmp_path, keep_last=2)
    assert [s for s, _ in ck.list_checkpoints(tmp_path)] == [3, 4]
    assert not [p for p in (tmp_path / "checkpoints").iterdir() if "tmp" in p.name]
    data = ck.load_checkpoint(ck.latest_checkpoint(tmp_path))
    assert data["step"] == 4 and torch.equal(data["model"]["w"], torch.arange(4.0))
    assert data["format"] == ck.FORMAT


def test_truncated_checkpoint_gives_one_clear_message(tmp_path):
    path = ck.save_checkpoint(_payload(), ck.checkpoint_path(tmp_path, 1))
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(FdaeError, match="truncated or corrupt"):
        ck.load_checkpoint(path)


@pytest.mark.parametrize("kind", ["text", "foreign_torch", "pickled_object"])
def test_foreign_file_is_not_a_checkpoint(tmp_path, kind):
    path = tmp_path / "model.pt"
    if kind == "text":
        path.write_text("hello, I am a text file\n")
    elif kind == "foreign_torch":
        torch.save({"state_dict": {"w": torch.zeros(2)}}, path)
    else:
        torch.save({"args": argparse.Namespace(a=1)}, path)
    with pytest.raises(FdaeError, match="not an fdae checkpoint"):
        ck.load_checkpoint(path)


def test_missing_checkpoint_and_non_run_dirs(tmp_path):
    with pytest.raises(FdaeError, match="checkpoint not found"):
        ck.load_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(FdaeError, match="run directory not found"):
        ck.load_run(tmp_path / "nope")
    (tmp_path / "plain").mkdir()
    with pytest.raises(FdaeError, match="not an fdae run directory"):
        ck.load_run(tmp_path / "plain")
    (tmp_path / "plain" / "config.yaml").write_text("name: x\n")
    with pytest.raises(FdaeError, match="no checkpoint yet"):
        ck.load_run(tmp_path / "plain")


def test_load_run_uses_ema_weights(tmp_path):
    from fdae.config import save_config, to_dict
    from fdae.data import get_dataset
    from fdae.methods import build_method

    cfg = tiny_cfg("data.name=dsprites-synth")
    ds = get_dataset(cfg.data.name)
    method = build_method(cfg, ds.num_channels, ds.image_size)
    ema = {n: torch.full_like(p, 0.5) for n, p in method.named_parameters()}
    (tmp_path / "checkpoints").mkdir()
    save_config(cfg, tmp_path / "config.yaml")
    ck.save_checkpoint({"step": 7, "model": method.state_dict(), "config": to_dict(cfg),
                        "ema": {"params": ema, "decay": 0.9, "updates": 1}}, ck.checkpoint_path(tmp_path, 7))
    run = ck.load_run(tmp_path, use_ema=True, dataset=ds)
    assert run.step == 7 and run.used_ema and not run.method.training
    assert all(torch.all(p == 0.5) for p in run.method.parameters())
    raw = ck.load_run(tmp_path, use_ema=False, dataset=ds)
    assert not raw.used_ema
    name, p = next(iter(raw.method.named_parameters()))
    assert torch.equal(p, method.state_dict()[name])
    # A checkpoint that does not fit the config names the problem.
    cfg2 = tiny_cfg("data.name=dsprites-synth", "method.latent_dim=16")
    save_config(cfg2, tmp_path / "config.yaml")
    data = torch.load(ck.checkpoint_path(tmp_path, 7), weights_only=True)
    data["config"] = to_dict(cfg2)
    data.pop("integrity")  # a hand-edited checkpoint: its old checksum no longer applies
    torch.save(data, ck.checkpoint_path(tmp_path, 7))
    with pytest.raises(FdaeError, match="does not fit the model"):
        ck.load_run(tmp_path, dataset=ds)


def test_global_rng_state_round_trip_loads_weights_only(tmp_path):
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    state = global_state()
    torch.save(state, tmp_path / "s.pt")
    a = (torch.rand(3), np.random.rand(3), random.random())
    set_global_state(torch.load(tmp_path / "s.pt", weights_only=True))
    b = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]
    g1 = make_generator(0, 1, 0, torch.device("cpu"))
    g2 = make_generator(0, 2, 0, torch.device("cpu"))
    assert not torch.equal(torch.rand(4, generator=g1), torch.rand(4, generator=g2))


def test_ema_update_mask_and_swap():
    model = torch.nn.Linear(2, 1)
    ema = EMA(model, decay=0.5)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.updates = 100  # past the warm-up: w = 0.5
    before = ema.shadow[0].clone()
    ema.update(mask=torch.tensor(0.0))
    assert torch.equal(ema.shadow[0], before)
    ema.update(mask=torch.tensor(1.0))
    assert torch.allclose(ema.shadow[0], 0.5 * before + 0.5)
    with ema.swapped():
        assert torch.equal(model.weight, ema.shadow[0])
    assert torch.all(model.weight == 1.0)


def test_guard_counts_streaks_on_device():
    g = NonFiniteGuard(torch.device("cpu"))
    for ok in (True, False, False, False, True, False):
        g.record(torch.tensor(ok))
    assert g.read() == (4, 3, 1)
    assert g.read() == (4, 1, 1)


def test_fused_optimizer_skips_on_device_flag():
    cfg = tiny_cfg("optim.name=adam").optim
    p = torch.nn.Parameter(torch.ones(3))
    opt = build_optimizer([p], cfg, torch.device("cpu"), fused=True)
    p.grad = torch.full((3,), float("nan"))
    opt.found_inf, opt.grad_scale = torch.tensor(1.0), None
    opt.step()
    assert torch.all(p == 1.0) and float(opt.state[p]["step"]) == 0
    p.grad = torch.ones(3)
    opt.found_inf = torch.tensor(0.0)
    opt.step()
    assert torch.all(p < 1.0)


def test_warmup_schedule():
    cfg = tiny_cfg("optim.lr=1e-3", "optim.warmup_steps=4").optim
    assert [lr_at(s, cfg) for s in range(6)] == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3, 1e-3])
    opt = build_optimizer([torch.nn.Parameter(torch.ones(1))], tiny_cfg("optim.name=radam").optim,
                          torch.device("cpu"))
    assert isinstance(opt, torch.optim.RAdam) and opt.defaults["weight_decay"] == 0.0
    assert os.environ.get("WORLD_SIZE") in (None, "1")
