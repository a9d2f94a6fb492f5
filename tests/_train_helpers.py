"""Shared helpers of the trainer tests (tiny configs that run in seconds on a CPU)."""

from __future__ import annotations

from pathlib import Path

import torch

from fdae.config import load_config, preset_path

ROOT = Path(__file__).resolve().parents[1]
DIFFAE_TINY = preset_path("diffae-tiny")
FDAE_TINY = preset_path("shapes3d-tiny")

# A few-hundred-thousand-parameter FDAE, whatever the preset's widths are.
FDAE_SMALL = [
    "method.num_concepts=2", "method.content_dim=8", "method.mask_dim=8", "method.adjust_dim=8",
    "method.encoder_width=8", "method.mask_decoder_width=24",
    "unet.preset=tiny", "unet.channels=32", "unet.channel_mult=[1,1]", "unet.attn_resolutions=[]",
]
QUIET = ["train.image_every=0", "train.eval_every=0", "train.device=cpu"]


def tiny_cfg(*overrides: str, preset: Path = DIFFAE_TINY):
    base = list(FDAE_SMALL) if preset == FDAE_TINY else []
    return load_config(preset, base + list(QUIET) + list(overrides))


def params_of(path: Path) -> dict[str, torch.Tensor]:
    data = torch.load(path, map_location="cpu", weights_only=True)
    return data["model"]


