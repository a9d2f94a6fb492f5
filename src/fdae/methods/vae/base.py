"""The Gaussian VAE that disentanglement_lib's six methods share (BaseVAE there): the
conv encoder gives means and log-variances, a reparameterised sample is decoded to
Bernoulli logits, and the loss is the reconstruction plus a method's regulariser.

Images arrive in [-1, 1] (fdae's datasets); the encoder and the Bernoulli targets see
them in [0, 1], as in disentanglement_lib. The representation is the mean, as in the
study. The only random draw of a step is the reparameterisation noise (plus the
methods' own, e.g. FactorVAE's permutations), made in `draw`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from fdae.config import MethodConfig, config_error
from fdae.methods.base import Method, TraversalAxis
from fdae.methods.vae.architecture import ConvEncoder, DeconvDecoder
from fdae.methods.vae.losses import bernoulli_reconstruction, gaussian_kl, sample_latent


@dataclass
class VAEConfig(MethodConfig):
    num_latents: int = 10
    # disentanglement_lib's study: the hyper-parameter and its six values (50 seeds each).
    SWEEP: ClassVar[tuple[str, tuple[float, ...]]] = ("", ())

    def check(self) -> None:
        if not self.num_latents >= 1:
            raise config_error("method.num_latents", ">= 1", self.num_latents, "the study uses method.num_latents=10")

    def _non_negative(self, *keys: str) -> None:
        for key in keys:
            if not getattr(self, key) >= 0:
                raise config_error(f"method.{key}", ">= 0", getattr(self, key),
                                   f"the study's values are {', '.join(f'{v:g}' for v in self.SWEEP[1])}")


class GaussianVAE(Method):
    Config = VAEConfig
    figures = ("reconstructions", "traversals")
    traversal_note = ("each latent set to -2 ... 2 (the prior's two standard deviations); sd = the spread of that "
                      "latent's mean over the sample (near 0: unused)")

    def __init__(self, cfg: VAEConfig, in_channels: int = 3, image_size: int = 64):
        super().__init__()
        self.cfg = cfg
        self.encoder = ConvEncoder(in_channels, cfg.num_latents, image_size)
        self.decoder = DeconvDecoder(cfg.num_latents, in_channels, image_size)

    # --- training -------------------------------------------------------------------
    def draw(self, images: Tensor, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        eps = torch.randn(images.shape[0], self.cfg.num_latents, device=images.device, generator=generator)
        return {"eps": eps}

    def regularizer(self, mean: Tensor, log_var: Tensor, z: Tensor, kl: Tensor, draws: dict[str, Tensor],
                    step: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """The method's term added to the reconstruction, and extra terms to log."""
        raise NotImplementedError

    def loss_given_draws(self, images: Tensor, draws: dict[str, Tensor], step: Tensor) -> dict[str, Tensor]:
        x = (images.float() + 1) / 2
        mean, log_var = self.encoder(x)
        mean, log_var = mean.float(), log_var.float()
        z = sample_latent(mean, log_var, draws["eps"].float())
        reconstruction = bernoulli_reconstruction(self.decoder(z), x)
        kl = gaussian_kl(mean, log_var)
        reg, extra = self.regularizer(mean, log_var, z, kl, draws, step)
        vae_loss = reconstruction + reg
        terms = {"reconstruction": reconstruction.detach(), "kl": kl.detach(),
                 "elbo": -(reconstruction + kl).detach(), "regularizer": reg.detach(),
                 "vae_loss": vae_loss.detach(), **extra}
        total = vae_loss
        for name, value in self.auxiliary_losses(z, draws).items():
            terms[name] = value.detach()
            total = total + value
        terms["loss"] = total
        return terms

    def auxiliary_losses(self, z: Tensor, draws: dict[str, Tensor]) -> dict[str, Tensor]:
        """Losses of parts trained by their own optimizer (`extra_optimizers`), added to
        the backward; each must reach only those parts' weights."""
        return {}

    # --- the representation ----------------------------------------------------------
    @property
    def groups(self) -> list[tuple[str, int]]:
        """Each latent is its own group (a candidate for one factor)."""
        return [(f"z{i + 1}", 1) for i in range(self.cfg.num_latents)]

    def posterior(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Means and log-variances (B, L) of q(z|x)."""
        return self.encoder((images.float() + 1) / 2)

    def representation(self, images: Tensor) -> Tensor:
        return self.posterior(images)[0]

    # --- images from codes -----------------------------------------------------------
    @torch.no_grad()
    def decode_codes(self, codes: Tensor, shape: tuple[int, ...], steps: int | None = None,
                     noise: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
        """The Bernoulli means sigmoid(logits), back in [-1, 1]."""
        return torch.sigmoid(self.decoder(codes).float()) * 2 - 1

    def traversal_axes(self, codes: Tensor, rows: int = 10, values: int = 7) -> list[TraversalAxis]:
        """One row per latent (the `rows` whose means spread most, in latent order), from
        -2 to 2 (the prior's two standard deviations); the label gives the spread of that
        latent's mean over the sample (near 0: unused)."""
        spread = codes.float().std(0)
        shown = sorted(spread.argsort(descending=True)[:rows].tolist())
        axes = []
        for i in shown:
            direction = torch.zeros(codes.shape[1], device=codes.device)
            direction[i] = 1.0
            axes.append(TraversalAxis(f"z{i + 1} (sd {float(spread[i]):.2f})", direction,
                                      torch.linspace(-2.0, 2.0, values)))
        return axes
