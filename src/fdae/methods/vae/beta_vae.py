"""beta-VAE (Higgins et al. 2017): reconstruction + beta KL."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor

from fdae.methods.vae.base import GaussianVAE, VAEConfig


@dataclass
class BetaVAEConfig(VAEConfig):
    name: str = "beta-vae"
    beta: float = 4.0
    SWEEP: ClassVar[tuple[str, tuple[float, ...]]] = ("beta", (1, 2, 4, 6, 8, 16))

    def check(self) -> None:
        super().check()
        self._non_negative("beta")


class BetaVAE(GaussianVAE):
    """beta-VAE (Higgins et al. 2017): reconstruction + beta KL."""

    Config = BetaVAEConfig

    def regularizer(self, mean, log_var, z, kl: Tensor, draws, step) -> tuple[Tensor, dict[str, Tensor]]:
        return self.cfg.beta * kl, {}
