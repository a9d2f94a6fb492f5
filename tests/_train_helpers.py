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




def interrupt_at(monkeypatch, step: int) -> None:
    """Make the next `train` call receive SIGINT right after optimizer step `step` (sent
    from inside the loop, as a user's Ctrl-C would arrive); undo with monkeypatch.undo()."""
    import signal

    from fdae.train.loop import _Trainer

    original = _Trainer.train_step

    def step_with_signal(self):
        original(self)
        if self.step == step:
            signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(_Trainer, "train_step", step_with_signal)
