"""Method registry: a config names a method, `build_method` makes it."""

from __future__ import annotations

from dataclasses import asdict

from fdae.config import Config
from fdae.errors import FdaeError
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
    check_unet_spec(spec)
    return METHODS[cfg.method.name](cfg.method, spec, cfg.edm, in_channels, image_size)


def check_unet_spec(spec) -> None:
    """U-Net shapes that only fail deep inside a forward pass, named before any work."""
    levels = len(spec.channel_mult)
    halvings = 2 ** (levels - 1)
    if spec.image_size % halvings:
        most = max(k for k in range(1, levels + 1) if spec.image_size % 2 ** (k - 1) == 0)
        raise FdaeError(f"unet.channel_mult has {levels} levels, which halve a {spec.image_size}-pixel image "
                        f"{levels - 1} times; give it at most {most} entries")
    for mult in spec.channel_mult:
        width = spec.channels * mult
        heads = max(1, width // spec.head_channels)
        if width % heads:
            raise FdaeError(f"a U-Net level of unet.channels x {mult} = {width} channels cannot be split into "
                            f"{heads} attention heads of unet.head_channels={spec.head_channels}; choose "
                            f"unet.channels and unet.head_channels so that the heads divide every level's width")


__all__ = ["check_unet_spec", "DiffusionAutoencoder", "FDAE", "DiffAE", "METHODS", "build_method"]
