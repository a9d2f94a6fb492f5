"""The tiny FDAE and Diff-AE presets train exactly as they did before the method
interface (fdae.methods.base.Method) was introduced: their first five steps' losses,
loss terms and gradient norms (fixed seed, fp32, CPU, batch 4) were recorded with the
code before that change and are pinned here."""

from __future__ import annotations

import pytest
import torch

from fdae.config import load_config, preset_path
from fdae.train.logging import read_jsonl
from fdae.train.loop import train

PINNED = {
    "shapes3d-tiny": [
        {"loss": 1.5832579135894775, "content_decorrelation": 0.0384763665497303, "diffusion": 1.58311927318573, "mask_entropy": 1.3764147758483887, "grad_norm": 2.068978786468506},
        {"loss": 1.2127867937088013, "content_decorrelation": 0.02348919026553631, "diffusion": 1.2126492261886597, "mask_entropy": 1.3693456649780273, "grad_norm": 1.1021634340286255},
        {"loss": 1.3707292079925537, "content_decorrelation": 0.025151362642645836, "diffusion": 1.3705917596817017, "mask_entropy": 1.3685635328292847, "grad_norm": 2.1832115650177},
        {"loss": 1.56919527053833, "content_decorrelation": 0.02805904857814312, "diffusion": 1.569057583808899, "mask_entropy": 1.369783878326416, "grad_norm": 2.559075355529785},
        {"loss": 1.4806619882583618, "content_decorrelation": 0.04475925490260124, "diffusion": 1.4805240631103516, "mask_entropy": 1.3687081336975098, "grad_norm": 2.863774538040161},
    ],
    "diffae-tiny": [
        {"loss": 1.58311927318573, "diffusion": 1.58311927318573, "grad_norm": 2.6305150985717773},
        {"loss": 1.2175536155700684, "diffusion": 1.2175536155700684, "grad_norm": 1.6997345685958862},
        {"loss": 1.4237271547317505, "diffusion": 1.4237271547317505, "grad_norm": 2.6541898250579834},
        {"loss": 1.6555079221725464, "diffusion": 1.6555079221725464, "grad_norm": 3.3488101959228516},
        {"loss": 1.6252436637878418, "diffusion": 1.6252436637878418, "grad_norm": 3.524014472961426},
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
