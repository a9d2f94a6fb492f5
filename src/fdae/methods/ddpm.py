"""An unconditional DDPM in pixel space: DisDiff's stage 1, the pretrained model that
stage 2 (`fdae.methods.disdiff`) freezes and decomposes.

As DisDiff's reference (REFERENCE.md section 2): T = 1000 steps of LDM's "linear"
schedule (beta from 0.0015 to 0.0155), the U-Net predicts the noise, an L1 loss, t
drawn uniformly. The reference trains it on VQ latents; fdae trains it on pixels (no
pretrained VQ autoencoder or LPIPS network can be had here, and at 32-64 px a pixel
model is affordable). It has no representation: `fdae eval` refuses it, `fdae viz`
draws samples.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from fdae.config import MethodConfig, config_error
from fdae.diffusion import ddpm
from fdae.diffusion.unet import UNet, UNetSpec
from fdae.errors import FdaeError
from fdae.methods.base import Method


@dataclass
class DDPMConfig(MethodConfig):
    name: str = "ddpm"
    timesteps: int = 1000  # T
    beta_start: float = 0.0015
    beta_end: float = 0.0155
    sample_steps: int = 50  # DDIM steps for samples and decoding
    SECTIONS: ClassVar[tuple[str, ...]] = ("unet",)

    def check(self) -> None:
        if not self.timesteps >= 2:
            raise config_error("method.timesteps", ">= 2", self.timesteps, "DisDiff uses 1000")
        if not 0 < self.beta_start < self.beta_end < 1:
            raise config_error("method.beta_end", "with 0 < beta_start < beta_end < 1", (self.beta_start, self.beta_end),
                               "DisDiff uses method.beta_start=0.0015 method.beta_end=0.0155")
        if not self.sample_steps >= 1:
            raise config_error("method.sample_steps", ">= 1", self.sample_steps, "e.g. method.sample_steps=50")


class DDPM(Method):
    """eps_theta(x_t, t), trained with |eps_theta - eps|."""

    Config = DDPMConfig
    figures = ("samples",)

    @classmethod
    def build(cls, cfg: Any, in_channels: int, image_size: int) -> "DDPM":
        from fdae.methods import unet_spec

        return cls(cfg.method, unet_spec(cfg, in_channels, image_size))

    def __init__(self, cfg: DDPMConfig, unet_spec: UNetSpec):
        super().__init__()
        self.cfg = cfg
        self.unet = UNet(unet_spec)
        betas = ddpm.linear_betas(cfg.timesteps, cfg.beta_start, cfg.beta_end)
        self.register_buffer("betas", betas, persistent=False)  # float64, from the config
        self.register_buffer("abar", ddpm.alphas_cumprod(betas), persistent=False)

    def eps(self, x_t: Tensor, t: Tensor) -> Tensor:
        """eps_theta(x_t, t): the U-Net's embedding sees t (noise label t / T times T)."""
        return self.unet(x_t, t.float() / self.unet.spec.time_scale).float()

    def draw(self, images: Tensor, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        t = torch.randint(0, self.cfg.timesteps, (images.shape[0],), device=images.device, generator=generator)
        noise = torch.randn(images.shape, device=images.device, generator=generator)
        return {"t": t, "noise": noise}

    def loss_given_draws(self, images: Tensor, draws: dict[str, Tensor], step: Tensor) -> dict[str, Tensor]:
        x_t = ddpm.q_sample(images.float(), draws["t"], draws["noise"], self.abar)
        loss = (self.eps(x_t, draws["t"]) - draws["noise"]).abs().mean()
        return {"loss": loss, "l1_eps": loss.detach()}

    @torch.no_grad()
    def sample(self, n: int, shape: tuple[int, ...], steps: int | None = None, noise: Tensor | None = None,
               generator: torch.Generator | None = None) -> Tensor:
        """n images by deterministic DDIM from `noise` (or fresh noise), in eval mode."""
        was = self.training
        self.eval()
        try:
            return self._sample(n, shape, steps, noise, generator)
        finally:
            self.train(was)

    def _sample(self, n: int, shape: tuple[int, ...], steps: int | None, noise: Tensor | None,
                generator: torch.Generator | None) -> Tensor:
        device = next(self.parameters()).device
        if noise is None:
            noise = torch.randn((n, *shape), device=device, generator=generator)
        x_T = noise.to(device).expand(n, *shape)
        out = ddpm.ddim_sample(self.eps, x_T, self.abar, steps or self.cfg.sample_steps)
        return out.clamp(-1, 1)

    @property
    def groups(self) -> list[tuple[str, int]]:
        raise _no_representation()

    def representation(self, images: Tensor) -> Tensor:
        raise _no_representation()


def _no_representation() -> FdaeError:
    return FdaeError("an unconditional DDPM (DisDiff's stage 1) has no representation to evaluate; train "
                     "DisDiff's stage 2 on it (method.name=disdiff method.pretrained=RUN_DIR) and evaluate that run")
