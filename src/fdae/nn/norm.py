"""Normalisation layers shared by the networks."""

from __future__ import annotations

from torch import Tensor, nn


class GroupNorm32(nn.GroupNorm):
    """GroupNorm computed in fp32 whose output keeps the input's dtype.

    As the official ADM/FDAE `GroupNorm32`. In fp32 it is exactly `nn.GroupNorm` (same
    parameters, same state-dict keys). Under bf16 autocast, where `group_norm` runs in
    fp32 and would hand fp32 activations to the next op, the output is rounded back to
    bf16, which halves the bytes the following SiLU and convolution read in eager mode.
    """

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.float()).to(x.dtype)
