"""The Factorized Diffusion Autoencoder (Wu et al., AAAI 2024).

CMFNet encodes the clean image into N concepts, each a content code and a mask code.
The shared mask decoder turns mask codes into N masks (softmax over concepts); the
adjusted content codes painted into their masks and summed give an 80-channel map that
is added after the U-Net's input convolution. With `use_masks=False` and N=1 it is the
paper's E+G baseline (a Diff-AE-style autoencoder with the same architecture).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from dataclasses import dataclass
from typing import ClassVar

from fdae.config import EDMConfig, MethodConfig, config_error
from fdae.diffusion.unet import UNet, UNetSpec
from fdae.methods.base import DiffusionAutoencoder
from fdae.methods.losses import content_decorrelation_loss, mask_entropy_loss
from fdae.nn.mask_decoder import MaskDecoder
from fdae.nn.resnet import ResNet18


@dataclass
class FDAEConfig(MethodConfig):
    """FDAE's section; the defaults are the paper's (N = 6, 80-dim codes, ResNet-18, a
    384-wide mask decoder, the official loss weights)."""

    name: str = "fdae"
    num_concepts: int = 6  # N
    content_dim: int = 80  # dims of each raw content code f_c
    mask_dim: int = 80  # d_m, dims of each mask code
    adjust_dim: int = 80  # channels of each adjusted content code f'_c = condition-map channels
    use_masks: bool = True  # False: the E+G ablation (one code, no masks)
    content_decorrelation_weight: float = 2.5e-5
    mask_entropy_weight: float = 1e-4
    encoder_width: int = 64  # ResNet-18 base width (64 = the standard trunk)
    mask_decoder_width: int = 384  # first mask-decoder width (Table 3: 384)
    SECTIONS: ClassVar[tuple[str, ...]] = ("unet", "edm", "dyga")

    def check(self) -> None:
        for key in ("num_concepts", "content_dim", "mask_dim", "adjust_dim", "encoder_width"):
            if not getattr(self, key) > 0:
                raise config_error(f"method.{key}", "> 0", getattr(self, key), f"set method.{key} to a positive value")
        if self.mask_decoder_width < 6:  # its narrowest stage is width // 6 channels
            raise config_error("method.mask_decoder_width", ">= 6", self.mask_decoder_width, "the paper uses 384")
        for key in ("content_decorrelation_weight", "mask_entropy_weight"):
            if not getattr(self, key) >= 0:
                raise config_error(f"method.{key}", ">= 0", getattr(self, key), f"set method.{key}=0 to turn it off")
        if not self.use_masks and self.num_concepts != 1:
            raise config_error("method.num_concepts", "1 when method.use_masks=false (the E+G ablation)",
                               self.num_concepts, "set method.num_concepts=1")


class CMFNet(nn.Module):
    """Content-mask factorization network: image -> content codes, mask codes, masks."""

    def __init__(self, cfg: FDAEConfig, in_channels: int = 3, image_size: int = 64):
        super().__init__()
        self.n, self.use_masks = cfg.num_concepts, cfg.use_masks
        self.content_dim, self.mask_dim = cfg.content_dim, cfg.mask_dim
        self.encoder = ResNet18(in_channels, cfg.encoder_width)
        feat = self.encoder.out_features
        self.content = nn.Linear(feat, cfg.content_dim * self.n)
        # Per-concept "dimension adjustment" Linear(d_c, d_adj), no activation.
        self.adjust_weight = nn.Parameter(torch.empty(self.n, cfg.adjust_dim, cfg.content_dim))
        self.adjust_bias = nn.Parameter(torch.empty(self.n, cfg.adjust_dim))
        for i in range(self.n):  # the default nn.Linear initialisation, concept by concept
            lin = nn.Linear(cfg.content_dim, cfg.adjust_dim)
            with torch.no_grad():
                self.adjust_weight[i].copy_(lin.weight)
                self.adjust_bias[i].copy_(lin.bias)
        if self.use_masks:
            self.mask = nn.Linear(feat, cfg.mask_dim * self.n)
            self.mask_decoder = MaskDecoder(cfg.mask_dim, cfg.mask_decoder_width, image_size)
        self.image_size = image_size

    def codes(self, images: Tensor) -> tuple[Tensor, Tensor | None]:
        """Raw content codes (B, N, d_c) and mask codes (B, N, d_m) or None."""
        h = self.encoder(images)
        content = self.content(h).reshape(h.shape[0], self.n, self.content_dim)
        mask = self.mask(h).reshape(h.shape[0], self.n, self.mask_dim) if self.use_masks else None
        return content, mask

    def masks(self, mask_codes: Tensor | None, batch: int, device: torch.device) -> Tensor:
        """Masks (B, N, H, W), non-negative and summing to 1 over concepts."""
        if mask_codes is None:
            return torch.ones(batch, 1, self.image_size, self.image_size, device=device)
        return self.mask_decoder(mask_codes).float().softmax(dim=1)

    def condition_map(self, content: Tensor, masks: Tensor) -> Tensor:
        """C = sum_n f'_n[:, :, None, None] * M_n, with f'_n the adjusted content codes."""
        adjusted = torch.einsum("bnc,nac->bna", content, self.adjust_weight.to(content.dtype))
        adjusted = adjusted + self.adjust_bias.to(content.dtype)
        return torch.einsum("bna,bnhw->bahw", adjusted, masks.to(adjusted.dtype))


def _flatten_codes(content: Tensor, mask_codes: Tensor | None) -> Tensor:
    """The representation: N content codes then N mask codes, as one (B, d) vector."""
    parts = [content.reshape(content.shape[0], -1)]
    if mask_codes is not None:
        parts.append(mask_codes.reshape(mask_codes.shape[0], -1))
    return torch.cat(parts, dim=1)


class FDAE(DiffusionAutoencoder):
    """FDAE (Wu et al., AAAI 2024): N content codes and masks condition an EDM U-Net."""

    Config = FDAEConfig
    figures = ("reconstructions", "traversals", "masks", "swap_grid", "concept_swaps")

    @classmethod
    def unet_options(cls, method_cfg: FDAEConfig) -> dict[str, int]:
        return {"cond_channels": method_cfg.adjust_dim}

    @classmethod
    def anchor_units(cls, method_cfg: FDAEConfig) -> tuple[int, int]:
        return method_cfg.num_concepts, method_cfg.content_dim  # DyGA anchors the content codes

    def __init__(self, cfg: FDAEConfig, unet_spec: UNetSpec, edm_cfg: EDMConfig,
                 in_channels: int = 3, image_size: int = 64):
        super().__init__(edm_cfg)
        self.cfg = cfg
        if not cfg.use_masks:  # the E+G ablation: no masks to draw or swap
            self.figures = ("reconstructions", "traversals")
        self.cmfnet = CMFNet(cfg, in_channels, image_size)
        self.unet = UNet(unet_spec)

    @property
    def groups(self) -> list[tuple[str, int]]:
        n = self.cfg.num_concepts
        out = [(f"content_{i}", self.cfg.content_dim) for i in range(n)]
        if self.cfg.use_masks:
            out += [(f"mask_{i}", self.cfg.mask_dim) for i in range(n)]
        return out

    @property
    def paper_concepts(self) -> int:
        """N: the paper protocol keeps 36 // (2N) dimensions of each group, the official
        formula, also for the E+G ablation's single group (N = 1: 18 dimensions)."""
        return self.cfg.num_concepts

    def condition_from_codes(self, content: Tensor, mask_codes: Tensor | None) -> dict[str, Any]:
        """Everything downstream of the codes, so figures can swap codes between images."""
        masks = self.cmfnet.masks(mask_codes, content.shape[0], content.device)
        cmap = self.cmfnet.condition_map(content, masks)
        return {
            "unet": {"cond_map": cmap},
            "codes": _flatten_codes(content, mask_codes),
            "content": content,
            "mask_codes": mask_codes,
            "masks": masks,
        }

    def condition_from_flat(self, codes: Tensor) -> dict[str, Any]:
        n, dc = self.cfg.num_concepts, self.cfg.content_dim
        content = codes[:, :n * dc].reshape(-1, n, dc)
        mask_codes = codes[:, n * dc:].reshape(-1, n, self.cfg.mask_dim) if self.cfg.use_masks else None
        return self.condition_from_codes(content, mask_codes)

    def codes(self, images: Tensor) -> tuple[Tensor, Tensor | None]:
        """CMFNet's content codes (anchored when DyGA is on) and mask codes."""
        content, mask_codes = self.cmfnet.codes(images)
        if self.anchors is not None:
            content = self.anchors(content)
        return content, mask_codes

    def representation(self, images: Tensor) -> Tensor:
        """Content codes then mask codes, without decoding masks (evaluation speed)."""
        return _flatten_codes(*self.codes(images))

    def condition(self, images: Tensor) -> dict[str, Any]:
        return self.condition_from_codes(*self.codes(images))

    def unit_features(self, images: Tensor) -> Tensor:
        """The un-anchored content codes (B, N, d_c): what DyGA's mixtures are fitted to."""
        return self.cmfnet.codes(images)[0]

    def extra_losses(self, cond: dict[str, Any]) -> dict[str, tuple[Tensor, float]]:
        """Only the terms whose weight is non-zero are computed (ablations drop them)."""
        out: dict[str, tuple[Tensor, float]] = {}
        if self.cfg.num_concepts > 1 and self.cfg.content_decorrelation_weight:
            out["content_decorrelation"] = (content_decorrelation_loss(cond["content"]),
                                            self.cfg.content_decorrelation_weight)
        if self.cfg.use_masks and self.cfg.mask_entropy_weight:
            out["mask_entropy"] = (mask_entropy_loss(cond["masks"]), self.cfg.mask_entropy_weight)
        return out
