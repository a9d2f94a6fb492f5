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

from fdae.config import EDMConfig, MethodConfig
from fdae.diffusion.unet import UNet, UNetSpec
from fdae.methods.base import DiffusionAutoencoder
from fdae.methods.losses import content_decorrelation_loss, mask_entropy_loss
from fdae.nn.mask_decoder import MaskDecoder
from fdae.nn.resnet import ResNet18


class CMFNet(nn.Module):
    """Content-mask factorization network: image -> content codes, mask codes, masks."""

    def __init__(self, cfg: MethodConfig, in_channels: int = 3, image_size: int = 64):
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
    def __init__(self, cfg: MethodConfig, unet_spec: UNetSpec, edm_cfg: EDMConfig,
                 in_channels: int = 3, image_size: int = 64):
        super().__init__(edm_cfg)
        self.cfg = cfg
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

    def representation(self, images: Tensor) -> Tensor:
        """Content codes then mask codes, without decoding masks (evaluation speed)."""
        return _flatten_codes(*self.cmfnet.codes(images))

    def condition(self, images: Tensor) -> dict[str, Any]:
        content, mask_codes = self.cmfnet.codes(images)
        return self.condition_from_codes(content, mask_codes)

    def extra_losses(self, cond: dict[str, Any]) -> dict[str, tuple[Tensor, float]]:
        """Only the terms whose weight is non-zero are computed (ablations drop them)."""
        out: dict[str, tuple[Tensor, float]] = {}
        if self.cfg.num_concepts > 1 and self.cfg.content_decorrelation_weight:
            out["content_decorrelation"] = (content_decorrelation_loss(cond["content"]),
                                            self.cfg.content_decorrelation_weight)
        if self.cfg.use_masks and self.cfg.mask_entropy_weight:
            out["mask_entropy"] = (mask_entropy_loss(cond["masks"]), self.cfg.mask_entropy_weight)
        return out
