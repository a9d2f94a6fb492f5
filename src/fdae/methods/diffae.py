"""Diff-AE (Preechakul et al., 2022) baseline: a ResNet-18 encoder gives one semantic
vector that scales the U-Net's group-normalised features (adaptive group norm)."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from fdae.config import EDMConfig, MethodConfig
from fdae.diffusion.unet import UNet, UNetSpec
from fdae.methods.base import DiffusionAutoencoder
from fdae.nn.resnet import ResNet18


class DiffAE(DiffusionAutoencoder):
    def __init__(self, cfg: MethodConfig, unet_spec: UNetSpec, edm_cfg: EDMConfig,
                 in_channels: int = 3, image_size: int = 64):
        super().__init__(edm_cfg)
        self.cfg = cfg
        self.encoder = ResNet18(in_channels, cfg.encoder_width)
        self.project = nn.Linear(self.encoder.out_features, cfg.latent_dim)
        self.unet = UNet(unet_spec)

    @property
    def groups(self) -> list[tuple[str, int]]:
        return [("latent", self.cfg.latent_dim)]

    def condition(self, images: Tensor) -> dict[str, Any]:
        z = self.project(self.encoder(images))
        return {"unet": {"latent": z}, "codes": z}
