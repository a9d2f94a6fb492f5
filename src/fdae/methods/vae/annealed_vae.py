"""AnnealedVAE (Burgess et al. 2018): reconstruction + gamma |KL - C|, the capacity C
growing linearly from 0 to C_max over `iteration_threshold` steps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from fdae.config import config_error
from fdae.methods.vae.base import GaussianVAE, VAEConfig


@dataclass
class AnnealedVAEConfig(VAEConfig):
    name: str = "annealed-vae"
    c_max: float = 25.0
    gamma: float = 1000.0
    iteration_threshold: int = 100_000  # steps over which C grows to c_max (the study: 100,000 of 300,000)
    SWEEP: ClassVar[tuple[str, tuple[float, ...]]] = ("c_max", (5, 10, 25, 50, 75, 100))

    def check(self) -> None:
        super().check()
        self._non_negative("c_max", "gamma")
        if not self.iteration_threshold >= 1:
            raise config_error("method.iteration_threshold", ">= 1", self.iteration_threshold,
                               "the study uses 100000 (a third of its 300,000 steps)")


def capacity(step: Tensor, c_max: float, iteration_threshold: int) -> Tensor:
    """C = min(C_max, C_max step / iteration_threshold), step = steps done before this one."""
    return torch.clamp(c_max * step.float() / iteration_threshold, max=c_max)


class AnnealedVAE(GaussianVAE):
    """AnnealedVAE (Burgess et al. 2018): reconstruction + gamma |KL - C(step)|."""

    Config = AnnealedVAEConfig

    def regularizer(self, mean, log_var, z, kl: Tensor, draws, step: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        c = capacity(step, self.cfg.c_max, self.cfg.iteration_threshold)
        return self.cfg.gamma * (kl - c).abs(), {"capacity": c.detach()}
