"""FLOPs of one training step, counted by torch's flop counter on meta tensors (no compute).

Counts matrix work (convolutions, matmuls, attention) of the forward and backward pass;
used for MFU in the throughput benchmarks.
"""

from __future__ import annotations

import torch

from fdae.config import Config
from fdae.methods import build_method


def training_flops_per_image(cfg: Config, in_channels: int = 3, image_size: int = 64) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        model = build_method(cfg, in_channels, image_size)
    x = torch.zeros(2, in_channels, image_size, image_size, device="meta")
    with FlopCounterMode(display=False) as counter:
        model.loss(x)["loss"].backward()
    return counter.get_total_flops() / 2
