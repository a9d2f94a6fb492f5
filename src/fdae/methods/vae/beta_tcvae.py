"""beta-TCVAE (Chen et al. 2018): reconstruction + KL + (beta - 1) TC, the total
correlation by minibatch-weighted sampling."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor

from fdae.methods.vae.base import GaussianVAE, VAEConfig
from fdae.methods.vae.losses import total_correlation


@dataclass
class BetaTCVAEConfig(VAEConfig):
    name: str = "beta-tcvae"
    beta: float = 6.0
    SWEEP: ClassVar[tuple[str, tuple[float, ...]]] = ("beta", (1, 2, 4, 6, 8, 10))

    def check(self) -> None:
        super().check()
        self._non_negative("beta")


class BetaTCVAE(GaussianVAE):
    """beta-TCVAE (Chen et al. 2018): reconstruction + KL + (beta - 1) total correlation."""

    Config = BetaTCVAEConfig
    batch_estimates = "its total correlation (minibatch-weighted sampling)"

    def regularizer(self, mean: Tensor, log_var: Tensor, z: Tensor, kl: Tensor, draws,
                    step) -> tuple[Tensor, dict[str, Tensor]]:
        tc = total_correlation(z, mean, log_var)
        return kl + (self.cfg.beta - 1.0) * tc, {"total_correlation": tc.detach()}
