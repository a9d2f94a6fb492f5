"""DDP: two gloo processes on the CPU make the same update as one process that
accumulates the same two shards (`train.grad_accum=2`), for Diff-AE, for FactorVAE
(whose discriminator has its own optimizer, stepped in the same step) and for CL-Dis
(two networks, two optimizers, and the feedback measured between steps on every rank)."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from _train_helpers import params_of, tiny_cfg


STEPS = 3


def _cfg(method: str = "diffae", **kw):
    extra = [f"{k}={v}" for k, v in kw.items()]
    common = ["train.batch_size=4", f"train.steps={STEPS}", "train.log_every=1", "train.ckpt_every=0",
              "train.ema_decay=0.9", "train.dist_backend=gloo", *extra]
    if method == "factor-vae":
        from fdae.config import load_config

        return load_config("factor-vae-dsprites-synth", ["data.image_size=32", "train.image_every=0",
                                                         "train.device=cpu", *common])
    if method == "cldis":
        from fdae.config import load_config

        return load_config("cldis-dsprites-synth", [
            "data.image_size=16", "method.encoder_width=8", "method.distill_dims=3", "method.free_dims=2",
            "method.feedback_every=2", "method.feedback_batch=4", "unet.channels=16", "train.image_every=0",
            "train.device=cpu", *common])
    return tiny_cfg("data.name=dsprites-synth", *common)


def _worker(rank: int, world: int, port: int, run_dir: str, tests_dir: str, method: str) -> None:
    sys.path.insert(0, tests_dir)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from fdae.train.loop import train

    train(_cfg(method), run_dir, progress=False, tensorboard=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed unavailable")
@pytest.mark.parametrize("method", ["diffae", "factor-vae", "cldis"])
def test_two_gloo_processes_equal_one_process_with_the_same_global_batch(tmp_path, method):
    ddp_dir = tmp_path / "ddp"
    mp.spawn(_worker, args=(2, _free_port(), str(ddp_dir), str(Path(__file__).parent), method), nprocs=2, join=True)

    from fdae.train.checkpoint import latest_checkpoint
    from fdae.train.logging import read_jsonl
    from fdae.train.loop import train

    single = train(_cfg(method, **{"train.grad_accum": 2}), tmp_path / "single", progress=False, tensorboard=False)
    a, b = params_of(latest_checkpoint(ddp_dir)), params_of(single.checkpoint)
    names = [n for n, p in a.items() if p.is_floating_point() and "running" not in n]
    worst = max(float((a[n] - b[n]).abs().max()) for n in names)
    assert worst < 1e-5, worst
    # Some parameters really moved, so the comparison is not vacuous.
    from fdae.data import get_dataset
    from fdae.methods import build_method
    from fdae.train.loop import INIT
    from fdae.train.rng import derive_seed

    cfg = _cfg(method)
    ds = get_dataset(cfg.data.name, image_size=cfg.data.image_size)
    torch.manual_seed(derive_seed(cfg.seed, 0, INIT))
    init = build_method(cfg, ds.num_channels, ds.image_size).state_dict()
    assert max(float((a[n] - init[n]).abs().max()) for n in names) > 1e-4
    # Only rank 0 logs, and the logged loss is the mean over both ranks.
    la = [r["loss"] for r in read_jsonl(ddp_dir / "metrics.jsonl")]
    lb = [r["loss"] for r in read_jsonl(tmp_path / "single" / "metrics.jsonl")]
    assert len(la) == STEPS and la == pytest.approx(lb, rel=1e-5)
    # The checkpoint holds both ranks' random streams (for an exact resume).
    data = torch.load(latest_checkpoint(ddp_dir), weights_only=True)
    assert [r["shards"] for r in data["ranks"]] == [[0], [1]]
    extra = {"factor-vae": "discriminator", "cldis": "vae"}.get(method)
    if extra:  # the extra optimizer's state is the same too
        single_data = torch.load(single.checkpoint, weights_only=True)
        for k, state in data["extra_optimizers"][extra]["state"].items():
            other = single_data["extra_optimizers"][extra]["state"][k]
            assert float((state["exp_avg"] - other["exp_avg"]).abs().max()) < 1e-5
