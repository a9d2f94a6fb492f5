"""disentanglement_lib's networks (shared/architectures.py), layer by layer.

TensorFlow's "same" padding becomes explicit PyTorch padding: 1 for the 4x4 stride-2
convolutions and transposed convolutions (on even sizes TF pads 1 on each side), 0 for
the 2x2 stride-2 ones. Weights start as TF's dense and conv layers do: Glorot-uniform
kernels, zero biases. The reference is for 64x64 images (a 4x4x64 map after four
halvings); other multiples of 16 keep every layer and scale that map (s/16 x s/16).
Flattening is channel-major (PyTorch) instead of TF's channel-last, a fixed permutation
of the 1,024 inputs of a dense layer, so the same functions are learnt.
"""

from __future__ import annotations

from torch import Tensor, nn


def _glorot(module: nn.Module) -> nn.Module:
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
    return module


class ConvEncoder(nn.Module):
    """conv_encoder: 32 k4 s2, 32 k4 s2, 64 k2 s2, 64 k2 s2 (ReLU), Dense 256 (ReLU),
    then two Dense heads: the means and the log-variances of the latents."""

    def __init__(self, in_channels: int, num_latents: int, image_size: int = 64):
        super().__init__()
        if image_size % 16:
            raise ValueError(f"the VAE encoder halves the image four times: image_size must be a multiple of 16, "
                             f"got {image_size}")
        side = image_size // 16
        self.convs = nn.Sequential(
            nn.Conv2d(in_channels, 32, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(32, 32, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(32, 64, 2, 2, 0), nn.ReLU(),
            nn.Conv2d(64, 64, 2, 2, 0), nn.ReLU(),
        )
        self.dense = nn.Sequential(nn.Flatten(), nn.Linear(64 * side * side, 256), nn.ReLU())
        self.means = nn.Linear(256, num_latents)
        self.log_var = nn.Linear(256, num_latents)
        _glorot(self)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.dense(self.convs(x))
        return self.means(h), self.log_var(h)


class DeconvDecoder(nn.Module):
    """deconv_decoder: Dense 256, Dense 1024 (ReLU), reshape to 64 x 4 x 4, transposed
    convolutions 64, 32, 32 (k4 s2, ReLU) and C (k4 s2): Bernoulli logits."""

    def __init__(self, num_latents: int, out_channels: int, image_size: int = 64):
        super().__init__()
        self.side = image_size // 16
        self.dense = nn.Sequential(nn.Linear(num_latents, 256), nn.ReLU(),
                                   nn.Linear(256, 64 * self.side * self.side), nn.ReLU())
        self.deconvs = nn.Sequential(
            nn.ConvTranspose2d(64, 64, 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(32, 32, 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(32, out_channels, 4, 2, 1),
        )
        _glorot(self)

    def forward(self, z: Tensor) -> Tensor:
        return self.deconvs(self.dense(z).reshape(-1, 64, self.side, self.side))


class Discriminator(nn.Module):
    """fc_discriminator (FactorVAE): six Dense 1000 with leaky ReLU (slope 0.2), then
    Dense 2 logits; class 0 = a sample of q(z), class 1 = a dimension-wise permuted one."""

    def __init__(self, num_latents: int, width: int = 1000, depth: int = 6):
        super().__init__()
        layers: list[nn.Module] = []
        d = num_latents
        for _ in range(depth):
            layers += [nn.Linear(d, width), nn.LeakyReLU(0.2)]
            d = width
        layers.append(nn.Linear(d, 2))
        self.net = nn.Sequential(*layers)
        _glorot(self)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)
