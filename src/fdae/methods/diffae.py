"""Diff-AE (Preechakul et al., 2022) baseline: a ResNet-18 encoder gives one semantic
vector that scales the U-Net's group-normalised features (adaptive group norm)."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from dataclasses import dataclass
from typing import ClassVar

from fdae.config import EDMConfig, MethodConfig, config_error
from fdae.diffusion.unet import UNet, UNetSpec
from fdae.methods.base import DiffusionAutoencoder
from fdae.nn.resnet import ResNet18


@dataclass
class DiffAEConfig(MethodConfig):
    name: str = "diffae"
    latent_dim: int = 512  # size of the semantic code
    encoder_width: int = 64  # ResNet-18 base width (64 = the standard trunk)
    SECTIONS: ClassVar[tuple[str, ...]] = ("unet", "edm")

    def check(self) -> None:
        for key in ("latent_dim", "encoder_width"):
            if not getattr(self, key) > 0:
                raise config_error(f"method.{key}", "> 0", getattr(self, key), f"set method.{key} to a positive value")


class DiffAE(DiffusionAutoencoder):
    """Diff-AE (Preechakul et al. 2022): one semantic vector conditions an EDM U-Net."""

    Config = DiffAEConfig

    @classmethod
    def unet_options(cls, method_cfg: DiffAEConfig) -> dict[str, int]:
        return {"latent_dim": method_cfg.latent_dim}

    def __init__(self, cfg: DiffAEConfig, unet_spec: UNetSpec, edm_cfg: EDMConfig,
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

    def condition_from_flat(self, codes: Tensor) -> dict[str, Any]:
        return {"unet": {"latent": codes}, "codes": codes}
