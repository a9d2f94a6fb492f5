"""Method registry: a config names a method (`fdae.config.METHODS`), `build_method` makes it."""

from __future__ import annotations

from fdae.config import METHODS, Config, method_class
from fdae.errors import FdaeError
from fdae.methods.base import DiffusionAutoencoder, ExtraOptimizer, Method, TraversalAxis


def build_method(cfg: Config, in_channels: int = 3, image_size: int = 64) -> Method:
    """The method named by `cfg.method.name`, built from its own config section (and the
    shared `unet`/`edm` sections for diffusion methods)."""
    return method_class(cfg.method.name).build(cfg, in_channels, image_size)


def unet_spec(cfg: Config, in_channels: int, image_size: int, **method_options):
    """The U-Net of a run config: its `unet` preset and overrides, the method's conditioning
    options, for these images; checked (`check_unet_spec`)."""
    from fdae.diffusion.unet import make_spec

    overrides = {k: v for k, v in vars(cfg.unet).items() if k != "preset"}
    overrides.update(method_options)
    spec = make_spec(cfg.unet.preset, in_channels=in_channels, out_channels=in_channels, image_size=image_size,
                     **overrides)
    check_unet_spec(spec)
    return spec


def check_unet_spec(spec) -> None:
    """U-Net shapes that only fail deep inside a forward pass, named before any work."""
    from fdae.diffusion.unet import check_conditioning

    try:
        check_conditioning(spec)
    except ValueError as err:
        raise FdaeError(str(err)) from None
    levels = len(spec.channel_mult)
    halvings = 2 ** (levels - 1)
    if spec.image_size % halvings:
        most = max(k for k in range(1, levels + 1) if spec.image_size % 2 ** (k - 1) == 0)
        raise FdaeError(f"unet.channel_mult has {levels} levels, which halve a {spec.image_size}-pixel image "
                        f"{levels - 1} times; give it at most {most} entries")
    if spec.skip_dropout and spec.skip_dropout_resolutions is not None:
        have = sorted({spec.image_size // 2 ** k for k in range(levels)}, reverse=True)
        missing = [r for r in spec.skip_dropout_resolutions if r not in have]
        if missing:
            raise FdaeError(f"unet.skip_dropout_resolutions names {missing}, where this U-Net has no skips; its "
                            f"skips are at {have} px (or leave it null: the two highest)")
    for mult in spec.channel_mult:
        width = spec.channels * mult
        heads = max(1, width // spec.head_channels)
        if width % heads:
            raise FdaeError(f"a U-Net level of unet.channels x {mult} = {width} channels cannot be split into "
                            f"{heads} attention heads of unet.head_channels={spec.head_channels}; choose "
                            f"unet.channels and unet.head_channels so that the heads divide every level's width")


def __getattr__(name: str):
    """`from fdae.methods import FDAE` (or any method class by its class name), lazily."""
    for path in METHODS.values():
        module, cls = path.split(":")
        if cls == name:
            import importlib

            return getattr(importlib.import_module(module), cls)
    raise AttributeError(f"module 'fdae.methods' has no attribute {name!r}")


__all__ = ["build_method", "check_unet_spec", "unet_spec", "DiffusionAutoencoder", "ExtraOptimizer", "Method", "METHODS",
           "TraversalAxis"]
