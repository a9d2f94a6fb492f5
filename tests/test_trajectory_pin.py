"""The tiny FDAE and Diff-AE presets train exactly as recorded: their first five steps'
losses, loss terms and gradient norms (fixed seed, fp32, CPU, batch 4) are pinned here,
so a refactoring that changes the numbers fails. Recorded first before the method
interface (fdae.methods.base.Method) was introduced, and again, on purpose, when the
U-Net took ADM's scale-shift norm and groups of 4 or more channels (its ResBlocks had
lost the noise level in one-channel group norms) and diffae-tiny its edm.p_mean 2.0."""

from __future__ import annotations

import pytest
import torch

from fdae.config import load_config, preset_path
from fdae.train.logging import read_jsonl
from fdae.train.loop import train

PINNED = {
    "shapes3d-tiny": [
        {"loss": 1.5832579135894775, "content_decorrelation": 0.0384763665497303, "diffusion": 1.58311927318573, "mask_entropy": 1.3764147758483887, "grad_norm": 2.8568241596221924},
        {"loss": 1.2009319067001343, "content_decorrelation": 0.02348919026553631, "diffusion": 1.2007943391799927, "mask_entropy": 1.3693456649780273, "grad_norm": 1.4584681987762451},
        {"loss": 1.359020471572876, "content_decorrelation": 0.021643364802002907, "diffusion": 1.3588829040527344, "mask_entropy": 1.3702399730682373, "grad_norm": 3.1400959491729736},
        {"loss": 1.485878586769104, "content_decorrelation": 0.0390254482626915, "diffusion": 1.4857406616210938, "mask_entropy": 1.3696187734603882, "grad_norm": 4.162381172180176},
        {"loss": 1.4497458934783936, "content_decorrelation": 0.03641466796398163, "diffusion": 1.4496082067489624, "mask_entropy": 1.3673912286758423, "grad_norm": 3.3444578647613525},
    ],
    "diffae-tiny": [
        {"loss": 2.0986649990081787, "diffusion": 2.0986649990081787, "grad_norm": 4.648104190826416},
        {"loss": 2.036750555038452, "diffusion": 2.036750555038452, "grad_norm": 5.006263732910156},
        {"loss": 2.1542837619781494, "diffusion": 2.1542837619781494, "grad_norm": 4.190500259399414},
        {"loss": 1.9690632820129395, "diffusion": 1.9690632820129395, "grad_norm": 4.046613693237305},
        {"loss": 2.1486310958862305, "diffusion": 2.1486310958862305, "grad_norm": 5.199036598205566},
    ],
}


@pytest.mark.parametrize("preset", sorted(PINNED))
def test_loss_trajectory_is_unchanged(tmp_path, preset):
    torch.set_num_threads(1)
    cfg = load_config(preset_path(preset), [
        "train.steps=5", "train.batch_size=4", "train.log_every=1", "train.ckpt_every=0", "train.image_every=0",
        "train.eval_every=0", "train.device=cpu", "train.precision=fp32"])
    train(cfg, tmp_path / "run", progress=False, tensorboard=False)
    records = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert len(records) == len(PINNED[preset])
    for step, (got, want) in enumerate(zip(records, PINNED[preset]), start=1):
        for key, value in want.items():
            assert got[key] == pytest.approx(value, rel=1e-4, abs=1e-6), (preset, step, key)
