"""Encoders that map an image to a few latent units, as the diffusion disentanglement
methods after FDAE use them (REFERENCE.md section 2).

* `DisDiffTrunk`: DisDiff's encoder trunk (also EncDiff's): four 4x4 stride-2
  convolutions with BatchNorm, two residual blocks, flattened (2,048 features at 64 px
  with 128 channels).
* `WideTrunk`: the DyGA follow-up's larger trunk: a 7x7 convolution, four 4x4 stride-2
  convolutions to 128/256/256/256 channels (BatchNorm + ReLU each), flattened (4,096 at
  64 px), then a 4096 -> 4096 -> 256 fully connected head.
* `UnitMLPs`: one small MLP per unit, all evaluated in one batched product (EncDiff turns
  each of its scalars into a condition token this way).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class _TrunkResBlock(nn.Module):
    """ReLU - Conv3x3 - BN - ReLU - Conv1x1, plus the input (DisDiff's encoder ResBlock)."""

    def __init__(self, ch: int):
        super().__init__()
        self.body = nn.Sequential(nn.ReLU(), nn.Conv2d(ch, ch, 3, padding=1), nn.BatchNorm2d(ch), nn.ReLU(),
                                  nn.Conv2d(ch, ch, 1))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class DisDiffTrunk(nn.Module):
    """Conv4x4 s2 (BN, ReLU) x2, Conv4x4 s2 (BN, no ReLU), Conv4x4 s2 (BN, ReLU),
    ResBlock, BN, ReLU, ResBlock, flatten: (B, width * (image_size / 16)^2)."""

    def __init__(self, in_channels: int = 3, width: int = 128, image_size: int = 64):
        super().__init__()
        if image_size % 16:
            raise ValueError(f"the DisDiff encoder halves the image four times; {image_size} px is not a multiple of 16")

        def down(cin: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, width, 4, stride=2, padding=1), nn.BatchNorm2d(width)]

        self.net = nn.Sequential(
            *down(in_channels), nn.ReLU(), *down(width), nn.ReLU(), *down(width), *down(width), nn.ReLU(),
            _TrunkResBlock(width), nn.BatchNorm2d(width), nn.ReLU(), _TrunkResBlock(width), nn.Flatten())
        self.out_features = width * (image_size // 16) ** 2

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class WideTrunk(nn.Module):
    """Conv7x7 to width/2 channels, then four Conv4x4 stride 2 to width, 2 width, 2 width,
    2 width (BatchNorm + ReLU after each), flatten (F = 2 width (image_size / 16)^2), then
    Linear F -> F -> head with ReLUs. Width 128 at 64 px is the DyGA follow-up's
    64 / 128 / 256 / 256 / 256 trunk and its 4096 -> 4096 -> 256 head."""

    def __init__(self, in_channels: int = 3, width: int = 128, image_size: int = 64, head: int = 256):
        super().__init__()
        if image_size % 16:
            raise ValueError(f"the encoder halves the image four times; {image_size} px is not a multiple of 16")
        chans = [width // 2, width, 2 * width, 2 * width, 2 * width]
        layers: list[nn.Module] = [nn.Conv2d(in_channels, chans[0], 7, padding=3), nn.BatchNorm2d(chans[0]), nn.ReLU()]
        for cin, cout in zip(chans[:-1], chans[1:]):
            layers += [nn.Conv2d(cin, cout, 4, stride=2, padding=1), nn.BatchNorm2d(cout), nn.ReLU()]
        flat = chans[-1] * (image_size // 16) ** 2
        layers += [nn.Flatten(), nn.Linear(flat, flat), nn.ReLU(), nn.Linear(flat, head), nn.ReLU()]
        self.net = nn.Sequential(*layers)
        self.out_features = head

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class UnitMLPs(nn.Module):
    """`units` independent MLPs 1 -> widths... (scalar in, token out), one weight tensor per
    layer of shape (units, fan_in, fan_out), initialised as nn.Linear would each unit's."""

    def __init__(self, units: int, widths: list[int], activation: str = "elu", activate_last: bool = False):
        super().__init__()
        dims = [1, *widths]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for a, b in zip(dims[:-1], dims[1:]):
            bound = 1.0 / math.sqrt(a)
            self.weights.append(nn.Parameter(torch.empty(units, a, b).uniform_(-bound, bound)))
            self.biases.append(nn.Parameter(torch.empty(units, b).uniform_(-bound, bound)))
        self.act = {"elu": F.elu, "relu": F.relu, "silu": F.silu}[activation]
        self.activate_last = activate_last

    def forward(self, scalars: Tensor) -> Tensor:
        """scalars (B, U) -> tokens (B, U, widths[-1])."""
        h = scalars.unsqueeze(-1)
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = torch.einsum("bui,uio->buo", h, w.to(h.dtype)) + b.to(h.dtype)
            if i < last or self.activate_last:
                h = self.act(h)
        return h
