"""The CMFNet trunk is initialised as torchvision's ResNet-18 (the official CMFNet's)."""

import math

import torch
from torch import nn

from fdae.nn.resnet import ResNet18


def test_trunk_initialisation_matches_torchvision():
    torch.manual_seed(0)
    net = ResNet18(3, 64)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 20  # stem, 16 block convs, 3 downsampling 1x1 convs
    for conv in convs:
        fan_out = conv.out_channels * conv.kernel_size[0] * conv.kernel_size[1]
        expected = math.sqrt(2.0 / fan_out)  # Kaiming normal, mode fan_out, ReLU gain
        std = conv.weight.std().item()
        # PyTorch's default (Kaiming uniform, a=sqrt(5)) gives 1/sqrt(3 fan_in): far off.
        assert abs(std / expected - 1) < 0.12, (conv, std, expected)
        assert abs(conv.weight.mean().item()) < 0.1 * expected
    for bn in (m for m in net.modules() if isinstance(m, nn.BatchNorm2d)):
        assert torch.equal(bn.weight, torch.ones_like(bn.weight))
        assert torch.equal(bn.bias, torch.zeros_like(bn.bias))
