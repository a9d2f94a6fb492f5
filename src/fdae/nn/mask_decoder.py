"""FDAE's mask decoder D_M (supplementary Table 3), shared by all concepts.

Linear(d_m -> 384*4*4), then four [GroupNorm, 2x nearest upsample, 3x3 conv (no bias),
GroupNorm, SiLU] stages 384->384->256->128->64 (4 -> 64 px), then a 3x3 conv to one
logit map. The softmax over concepts is applied by the caller.
"""

from __future__ import annotations

import math

from torch import Tensor, nn


class MaskDecoder(nn.Module):
    def __init__(self, mask_dim: int = 80, width: int = 384, image_size: int = 64):
        super().__init__()
        if image_size % 16:
            raise ValueError("the mask decoder needs an image size divisible by 16")
        self.width, self.base = width, image_size // 16
        self.fc = nn.Linear(mask_dim, width * self.base * self.base)
        chans = [width, width, width * 2 // 3, width // 3, width // 6]  # 384, 384, 256, 128, 64
        layers: list[nn.Module] = []
        for cin, cout in zip(chans[:-1], chans[1:]):
            layers += [
                nn.GroupNorm(math.gcd(32, cin), cin), nn.Upsample(scale_factor=2, mode="nearest"),
                nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.GroupNorm(math.gcd(32, cout), cout), nn.SiLU(),
            ]
        layers.append(nn.Conv2d(chans[-1], 1, 3, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, codes: Tensor) -> Tensor:
        """codes (B, N, d_m) -> mask logits (B, N, H, W)."""
        b, n, d = codes.shape
        h = self.fc(codes.reshape(b * n, d)).reshape(b * n, self.width, self.base, self.base)
        out = self.net(h)
        return out.reshape(b, n, *out.shape[-2:])
