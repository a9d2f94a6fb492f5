"""Method registry: a config names a method, `build_method` makes it."""

from __future__ import annotations

from dataclasses import asdict

from fdae.config import Config
from fdae.diffusion.unet import make_spec
from fdae.methods.base import DiffusionAutoencoder
from fdae.methods.diffae import DiffAE
from fdae.methods.fdae import FDAE

METHODS = {"fdae": FDAE, "diffae": DiffAE}


def build_method(cfg: Config, in_channels: int = 3, image_size: int = 64) -> DiffusionAutoencoder:
    """The method named by `cfg.method.name`, with its U-Net wired for its conditioning."""
    overrides = {k: v for k, v in asdict(cfg.unet).items() if k != "preset"}
    if cfg.method.name == "fdae":
        overrides.update(cond_channels=cfg.method.adjust_dim)
    elif cfg.method.name == "diffae":
        overrides.update(latent_dim=cfg.method.latent_dim)
    spec = make_spec(cfg.unet.preset, in_channels=in_channels, out_channels=in_channels,
                     image_size=image_size, **overrides)
    return METHODS[cfg.method.name](cfg.method, spec, cfg.edm, in_channels, image_size)


__all__ = ["DiffusionAutoencoder", "FDAE", "DiffAE", "METHODS", "build_method"]
