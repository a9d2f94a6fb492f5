"""The `paper` U-Net and CMFNet pinned by more than their parameter counts: the layout of
every tensor (name and shape, hashed) and the outputs of one fixed forward pass with
seeded weights, recorded once (below) and compared on every run. A layer moved,
resized, reordered or computed differently fails here even when the total count stays
281,535,299 / 14,790,561.

Weights are redrawn from one seeded generator in registration order (matrices and
convolutions N(0, 1/fan_in), 1-D weights 1 + 0.1 N(0, 1), biases 0.1 N(0, 1)), so the
values pin the forward computation and the layout, not torch's initialisers (the
trunk's torchvision-style initialisation has its own test in test_resnet.py).
Tolerances allow float-rounding differences between CPUs and thread counts (fp32,
relative 1e-4 of the output's scale) and nothing more.

Record again (python tests/test_golden.py) only for an intended change of the
architecture, and say so in the commit.
"""

from __future__ import annotations

import hashlib
import math

import pytest
import torch
from torch import nn

from fdae.methods.fdae import FDAEConfig
from fdae.diffusion.unet import UNet, make_spec
from fdae.methods.fdae import CMFNet

# name -> value recorded with torch 2.13.0 on a CPU (fp32, one thread).
GOLDEN = {
    "unet": {
        "count": 281_535_299,
        "layout": "23b7dd704587f63e906114f8d14855ed536b52359ebc4b99f018b2933d2432bf",
        "output": [1722.3976983204484, 6375.2119981003925,
                   [-0.6069549918174744, 0.517472505569458, 0.022675801068544388, 1.4990386962890625,
                    0.8284887075424194]],
    },
    "cmfnet": {
        "count": 14_790_561,
        "layout": "4c42eba369cf70b182ebb184d562808bffa927cd879f55f67c1fa6ed4228af90",
        "content": [1.6507807243615389, 260.5567945521325,
                    [-0.6943634748458862, -0.003976009786128998, 0.9355859160423279, 1.340348243713379,
                     -0.24313044548034668]],
        "mask_codes": [-19.654230502434075, 267.87835204880685,
                       [0.7228899002075195, -0.07459017634391785, 1.6700388193130493, -1.2505393028259277,
                        0.22116971015930176]],
        "masks": [4096.000001855195, 4096.000001855195,  # masks sum to 1 at each of 64 x 64 pixels
                  [0.1662062257528305, 0.22689726948738098, 0.17925775051116943, 0.3459714353084564,
                   0.23145955801010132]],
        "cond_map": [1118.4155503515392, 14145.621447046686,
                     [0.004625007044523954, -0.08772174268960953, -0.0814247578382492, -0.08621606975793839,
                      0.01642753928899765]],
    },
}
# (channel, row, column) of the values recorded per output
UNET_POINTS = [(0, 0, 0), (1, 31, 17), (2, 63, 63), (0, 40, 5), (2, 9, 50)]
CODE_POINTS = [(0, 0), (1, 17), (2, 79), (4, 40), (5, 3)]
MAP_POINTS = [(0, 0, 0), (3, 31, 17), (5, 63, 63), (1, 40, 5), (4, 9, 50)]
COND_POINTS = [(0, 0, 0), (17, 31, 17), (79, 63, 63), (40, 40, 5), (3, 9, 50)]


def layout_digest(module: nn.Module) -> str:
    """sha256 of every state-dict entry's name and shape, in order."""
    text = ";".join(f"{name}:{tuple(t.shape)}" for name, t in module.state_dict().items())
    return hashlib.sha256(text.encode()).hexdigest()


@torch.no_grad()
def seeded_weights(module: nn.Module, seed: int) -> nn.Module:
    """Every parameter redrawn from one seeded generator, in registration order."""
    g = torch.Generator().manual_seed(seed)
    for name, p in module.named_parameters():
        noise = torch.randn(p.shape, generator=g)
        if p.dim() >= 2:
            p.copy_(noise / math.sqrt(p[0].numel()))
        elif name.endswith("weight"):
            p.copy_(1.0 + 0.1 * noise)
        else:
            p.copy_(0.1 * noise)
    return module.eval()


def _stats(t: torch.Tensor, points: list[tuple[int, ...]]) -> list:
    """[sum, sum of magnitudes, the values at `points`] of the one sample's output."""
    t = t[0].double()
    return [float(t.sum()), float(t.abs().sum()), [float(t[p]) for p in points]]


@torch.no_grad()
def unet_outputs() -> tuple[str, int, dict]:
    net = UNet(make_spec("paper", cond_channels=80))
    digest, count = layout_digest(net), sum(p.numel() for p in net.parameters())
    seeded_weights(net, 0)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 3, 64, 64, generator=g)
    cond = torch.randn(1, 80, 64, 64, generator=g)
    sigma = torch.tensor([0.7])
    out = net(x, 0.25 * sigma.log(), cond_map=cond)  # c_noise = ln(sigma) / 4, as EDM feeds it
    del net
    return digest, count, {"output": _stats(out, UNET_POINTS)}


@torch.no_grad()
def cmfnet_outputs() -> tuple[str, int, dict]:
    net = CMFNet(FDAEConfig())  # the paper's: N = 6, 80-dim codes, ResNet-18, mask decoder 384
    digest, count = layout_digest(net), sum(p.numel() for p in net.parameters())
    seeded_weights(net, 0)
    images = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(2)) * 2 - 1
    content, mask_codes = net.codes(images)
    masks = net.masks(mask_codes, 1, images.device)
    cond = net.condition_map(content, masks)
    return digest, count, {"content": _stats(content, CODE_POINTS), "mask_codes": _stats(mask_codes, CODE_POINTS),
                           "masks": _stats(masks, MAP_POINTS), "cond_map": _stats(cond, COND_POINTS)}


def _close(got: list, want: list, size: int, what: str) -> None:
    """Sums within 1e-4 of the sum of magnitudes; each value within 1e-4 of itself or of
    the mean magnitude of the output's `size` entries, whichever is larger."""
    (s, a, vals), (ws, wa, wvals) = got, want
    assert a == pytest.approx(wa, rel=1e-4), (what, a, wa)
    assert abs(s - ws) <= 1e-4 * wa, (what, s, ws)
    assert len(vals) == len(wvals) == 5
    for v, w in zip(vals, wvals):
        assert abs(v - w) <= 1e-4 * max(abs(w), wa / size), (what, v, w)


def test_cmfnet_layout_and_outputs_are_the_recorded_ones():
    digest, count, outs = cmfnet_outputs()
    want = GOLDEN["cmfnet"]
    assert count == want["count"]
    assert digest == want["layout"]
    sizes = {"content": 6 * 80, "mask_codes": 6 * 80, "masks": 6 * 64 * 64, "cond_map": 80 * 64 * 64}
    for key, size in sizes.items():
        _close(outs[key], want[key], size, key)


@pytest.mark.slow
def test_paper_unet_layout_and_output_are_the_recorded_ones():
    digest, count, out = unet_outputs()  # 281.5 M parameters: ~1.1 GB and a few seconds on a CPU
    want = GOLDEN["unet"]
    assert count == want["count"]
    assert digest == want["layout"]
    _close(out["output"], want["output"], 3 * 64 * 64, "unet output")


if __name__ == "__main__":  # prints the values to record (see the docstring)
    torch.set_num_threads(1)
    print("cmfnet", cmfnet_outputs())
    print("unet", unet_outputs())
