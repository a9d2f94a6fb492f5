"""FactorVAE (Kim & Mnih 2018): reconstruction + KL + gamma TC, the total correlation
estimated by a discriminator D between samples of q(z) and the same batch with every
latent permuted independently (density-ratio trick: TC ~ mean(logit_0 - logit_1)).

D is trained in the same step, by its own Adam, to tell the two apart. One backward
gives each part exactly its own gradient: the TC term reaches the encoder through D
evaluated with detached weights, and D's loss sees detached samples. The logged
"loss" is therefore the sum of both objectives; "vae_loss" and "discriminator" are
each part's own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor
from torch.func import functional_call

from fdae.config import config_error
from fdae.methods.base import ExtraOptimizer
from fdae.methods.vae.architecture import Discriminator
from fdae.methods.vae.base import GaussianVAE, VAEConfig
from fdae.methods.vae.losses import permute_dims

PROB_CLIP = 1e-6  # D's probabilities are clipped to [1e-6, 1 - 1e-6] before the log


@dataclass
class FactorVAEConfig(VAEConfig):
    name: str = "factor-vae"
    gamma: float = 40.0
    discriminator_lr: float = 1e-4
    discriminator_betas: list[float] = field(default_factory=lambda: [0.5, 0.9])
    SWEEP: ClassVar[tuple[str, tuple[float, ...]]] = ("gamma", (10, 20, 30, 40, 50, 100))

    def check(self) -> None:
        super().check()
        self._non_negative("gamma")
        if not self.discriminator_lr > 0:
            raise config_error("method.discriminator_lr", "> 0", self.discriminator_lr, "the study uses 1e-4")
        if len(self.discriminator_betas) != 2 or not all(0 <= b < 1 for b in self.discriminator_betas):
            raise config_error("method.discriminator_betas", "two numbers in [0, 1)", self.discriminator_betas,
                               "the study uses method.discriminator_betas=[0.5,0.9]")


def discriminator_loss(logits_real: Tensor, logits_permuted: Tensor) -> Tensor:
    """-(0.5 mean log D_0(z) + 0.5 mean log D_1(z_perm)), probabilities clipped."""
    p_real = logits_real.float().softmax(1).clamp(PROB_CLIP, 1 - PROB_CLIP)
    p_perm = logits_permuted.float().softmax(1).clamp(PROB_CLIP, 1 - PROB_CLIP)
    return -(0.5 * p_real[:, 0].log().mean() + 0.5 * p_perm[:, 1].log().mean())


def tc_estimate(logits_real: Tensor) -> Tensor:
    """mean(logit_0 - logit_1) = E[log D_0 / D_1], the TC estimate of the VAE's loss."""
    return (logits_real[:, 0] - logits_real[:, 1]).float().mean()


class FactorVAE(GaussianVAE):
    """FactorVAE (Kim & Mnih 2018): reconstruction + KL + gamma TC, TC from a discriminator."""

    Config = FactorVAEConfig
    batch_estimates = "the dimension-wise permutation its discriminator sees"

    def __init__(self, cfg: FactorVAEConfig, in_channels: int = 3, image_size: int = 64):
        super().__init__(cfg, in_channels, image_size)
        self.discriminator = Discriminator(cfg.num_latents)

    def extra_optimizers(self) -> list[ExtraOptimizer]:
        cfg = self.cfg

        def make(params):
            return torch.optim.Adam(params, lr=cfg.discriminator_lr, betas=tuple(cfg.discriminator_betas), eps=1e-8)

        return [ExtraOptimizer("discriminator", list(self.discriminator.parameters()), make)]

    def draw(self, images: Tensor, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        draws = super().draw(images, generator)
        b, latents = images.shape[0], self.cfg.num_latents
        keys = torch.rand(b, latents, device=images.device, generator=generator)
        draws["perm"] = keys.argsort(dim=0)  # one permutation of the batch per latent
        return draws

    def regularizer(self, mean: Tensor, log_var: Tensor, z: Tensor, kl: Tensor, draws: dict[str, Tensor],
                    step) -> tuple[Tensor, dict[str, Tensor]]:
        frozen = {name: p.detach() for name, p in self.discriminator.named_parameters()}
        tc = tc_estimate(functional_call(self.discriminator, frozen, (z,)))
        return kl + self.cfg.gamma * tc, {"tc": tc.detach()}

    def auxiliary_losses(self, z: Tensor, draws: dict[str, Tensor]) -> dict[str, Tensor]:
        z = z.detach()
        return {"discriminator": discriminator_loss(self.discriminator(z),
                                                    self.discriminator(permute_dims(z, draws["perm"])))}
