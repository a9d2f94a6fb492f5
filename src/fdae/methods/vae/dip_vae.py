"""DIP-VAE (Kumar et al. 2018): KL + lambda_od sum(off-diagonal^2) + lambda_d
sum((diagonal - 1)^2) of a covariance that should be the identity: of the means'
(type I), or of q(z) itself, Cov(mean) + E[diag(sigma^2)] (type II)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from fdae.methods.vae.base import GaussianVAE, VAEConfig
from fdae.methods.vae.losses import covariance, dip_regularizer


@dataclass
class DIPVAEIConfig(VAEConfig):
    name: str = "dip-vae-i"
    lambda_od: float = 10.0
    lambda_d_factor: float = 10.0  # lambda_d = lambda_d_factor * lambda_od (the study: 10 for type I)
    SWEEP: ClassVar[tuple[str, tuple[float, ...]]] = ("lambda_od", (1, 2, 5, 10, 20, 50))

    def check(self) -> None:
        super().check()
        self._non_negative("lambda_od", "lambda_d_factor")


@dataclass
class DIPVAEIIConfig(DIPVAEIConfig):
    name: str = "dip-vae-ii"
    lambda_d_factor: float = 1.0  # the study: 1 for type II


class DIPVAEI(GaussianVAE):
    """DIP-VAE-I (Kumar et al. 2018): KL + the means' covariance pushed to the identity."""

    Config = DIPVAEIConfig
    batch_estimates = "the covariance it regularises"

    def dip_covariance(self, mean: Tensor, log_var: Tensor) -> Tensor:
        return covariance(mean)

    def regularizer(self, mean: Tensor, log_var: Tensor, z, kl: Tensor, draws,
                    step) -> tuple[Tensor, dict[str, Tensor]]:
        lam_od = self.cfg.lambda_od
        dip = dip_regularizer(self.dip_covariance(mean, log_var), lam_od, self.cfg.lambda_d_factor * lam_od)
        return kl + dip, {"dip": dip.detach()}


class DIPVAEII(DIPVAEI):
    """DIP-VAE-II (Kumar et al. 2018): KL + the covariance of q(z) pushed to the identity."""

    Config = DIPVAEIIConfig

    def dip_covariance(self, mean: Tensor, log_var: Tensor) -> Tensor:
        return covariance(mean) + torch.diag(log_var.exp().mean(0))
