"""FDAE's two disentangling losses, as the official implementation computes them."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def content_decorrelation_loss(codes: Tensor) -> Tensor:
    """L_CD for raw content codes (B, N, d).

    Codes are centred over the batch, each sample's d-dim code is L2-normalised and
    divided by N; G_ij = sum over samples and dims of c_i * c_j; the loss is the mean
    |G_ij| over i != j. With one concept there is nothing to decorrelate: 0.
    """
    b, n, d = codes.shape
    if n < 2:
        return codes.new_zeros(())
    c = codes.float() - codes.float().mean(dim=0, keepdim=True)
    c = F.normalize(c, dim=2) / n  # (B, N, d)
    flat = c.permute(1, 0, 2).reshape(n, b * d)
    gram = flat @ flat.T
    off_diagonal = 1.0 - torch.eye(n, device=codes.device)  # no boolean indexing: no host sync
    return (gram.abs() * off_diagonal).sum() / (n * (n - 1))


def mask_entropy_loss(masks: Tensor) -> Tensor:
    """L_ME: mean over batch and pixels of -sum_n p_n log(p_n + 1e-20), masks (B, N, H, W)."""
    p = masks.float()
    return -(p * torch.log(p + 1e-20)).sum(dim=1).mean()
