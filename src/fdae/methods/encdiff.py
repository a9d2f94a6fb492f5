"""EncDiff (Yang et al., NeurIPS 2024): an encoder gives a few scalars, each turned into
a condition token by its own small MLP; the U-Net reads the tokens through
cross-attention; encoder and U-Net train together from scratch with the diffusion loss
alone (no regulariser). `encoder: wide` with 32-dim tokens is the DyGA follow-up's model
(youngjun-jun/dis-dis); with `dyga.enabled=true` the tokens are anchored (fdae.methods.dyga).

fdae trains it with its one diffusion formulation, EDM's denoiser loss in pixel space
(the reference uses an L1 epsilon loss on VQ latents; see the README's EncDiff section).

Its representation, for the metrics, is either the raw scalars (`representation:
scalars`, EncDiff's own evaluation) or the tokens (`tokens`: U groups of token_dim, which
the unit-pca protocol reduces to one PCA dimension per unit, as the DyGA follow-up does).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from torch import Tensor, nn

from fdae.config import EDMConfig, MethodConfig, config_error
from fdae.diffusion.unet import UNet, UNetSpec
from fdae.methods.base import DiffusionAutoencoder
from fdae.nn.unit_encoders import DisDiffTrunk, UnitMLPs, WideTrunk


@dataclass
class EncDiffConfig(MethodConfig):
    """EncDiff's section; the defaults are EncDiff's (20 scalars, 1 -> 64 -> 128 -> 16 ELU
    MLPs, DisDiff's conv trunk with 128 channels)."""

    name: str = "encdiff"
    num_units: int = 20  # scalars = condition tokens
    token_dim: int = 16  # EncDiff 16; the DyGA follow-up 32
    unit_widths: list[int] = field(default_factory=lambda: [64, 128])  # hidden widths of each unit's MLP
    unit_activation: str = "elu"  # elu (EncDiff) | relu (follow-up)
    activate_tokens: bool = False  # an activation after the last layer too (the follow-up: true)
    encoder: str = "disdiff"  # disdiff (EncDiff) | wide (the follow-up's larger trunk)
    encoder_width: int = 128
    representation: str = "scalars"  # scalars (EncDiff's evaluation) | tokens (the follow-up's)
    SECTIONS: ClassVar[tuple[str, ...]] = ("unet", "edm", "dyga")

    def check(self) -> None:
        for key in ("num_units", "token_dim", "encoder_width"):
            if not getattr(self, key) > 0:
                raise config_error(f"method.{key}", "> 0", getattr(self, key), f"set method.{key} to a positive value")
        if not all(isinstance(w, int) and w > 0 for w in self.unit_widths):
            raise config_error("method.unit_widths", "a list of positive integers", self.unit_widths,
                               "e.g. method.unit_widths=[64,128]")
        for key, allowed in (("unit_activation", ("elu", "relu", "silu")), ("encoder", ("disdiff", "wide")),
                             ("representation", ("scalars", "tokens"))):
            if getattr(self, key) not in allowed:
                raise config_error(f"method.{key}", f"one of {', '.join(allowed)}", getattr(self, key),
                                   f"set method.{key}={allowed[0]}")


class EncDiff(DiffusionAutoencoder):
    """EncDiff (Yang et al., NeurIPS 2024): scalar units -> per-unit tokens -> cross-attention U-Net."""

    Config = EncDiffConfig
    figures = ("reconstructions", "traversals", "unit_swaps")

    @classmethod
    def unet_options(cls, method_cfg: EncDiffConfig) -> dict[str, int]:
        return {"context_dim": method_cfg.token_dim}

    @classmethod
    def anchor_units(cls, method_cfg: EncDiffConfig) -> tuple[int, int]:
        return method_cfg.num_units, method_cfg.token_dim  # DyGA anchors the tokens

    def __init__(self, cfg: EncDiffConfig, unet_spec: UNetSpec, edm_cfg: EDMConfig,
                 in_channels: int = 3, image_size: int = 64):
        super().__init__(edm_cfg)
        self.cfg = cfg
        trunk = DisDiffTrunk if cfg.encoder == "disdiff" else WideTrunk
        self.trunk = trunk(in_channels, cfg.encoder_width, image_size)
        self.to_scalars = nn.Linear(self.trunk.out_features, cfg.num_units)
        self.units = UnitMLPs(cfg.num_units, [*cfg.unit_widths, cfg.token_dim], cfg.unit_activation,
                              cfg.activate_tokens)
        self.unet = UNet(unet_spec)

    @property
    def groups(self) -> list[tuple[str, int]]:
        d = 1 if self.cfg.representation == "scalars" else self.cfg.token_dim
        return [(f"unit{u}", d) for u in range(self.cfg.num_units)]

    def scalars(self, images: Tensor) -> Tensor:
        return self.to_scalars(self.trunk(images))

    def tokens_of(self, scalars: Tensor) -> Tensor:
        """The condition tokens (B, U, token_dim) of scalars (B, U), anchored when DyGA is on."""
        tokens = self.units(scalars)
        return self.anchors(tokens) if self.anchors is not None else tokens

    def condition(self, images: Tensor) -> dict[str, Any]:
        s = self.scalars(images)
        tokens = self.tokens_of(s)
        codes = s if self.cfg.representation == "scalars" else tokens.flatten(1)
        return {"unet": {"context": tokens}, "codes": codes, "scalars": s}

    def representation(self, images: Tensor) -> Tensor:
        """The scalars alone (no tokens) or the flattened, anchored tokens."""
        s = self.scalars(images)
        return s if self.cfg.representation == "scalars" else self.tokens_of(s).flatten(1)

    def condition_from_flat(self, codes: Tensor) -> dict[str, Any]:
        if self.cfg.representation == "scalars":
            tokens = self.tokens_of(codes)
        else:
            tokens = codes.reshape(codes.shape[0], self.cfg.num_units, self.cfg.token_dim)
        return {"unet": {"context": tokens}, "codes": codes}

    def unit_features(self, images: Tensor) -> Tensor:
        """The un-anchored tokens (B, U, token_dim): what DyGA's mixtures are fitted to."""
        return self.units(self.scalars(images))
