"""What every method is: an encoder whose representation conditions an EDM denoiser.

A method differs from another only in `condition` (how images become the generator's
conditioning and the representation) and `extra_losses`; the EDM loss, reconstruction
and sampling are shared here.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from fdae.config import EDMConfig
from fdae.diffusion import edm
from fdae.diffusion.unet import UNet


class DiffusionAutoencoder(nn.Module):
    """Base class. Subclasses set `self.unet` and implement `condition` and `groups`.

    `condition(images)` returns a dict with:
      * "unet": keyword arguments for the U-Net (e.g. cond_map=..., latent=...);
      * "codes": the representation (B, d) used by the metrics;
      * anything else the method's `extra_losses` or figures need (masks, raw codes).
    """

    unet: UNet

    def __init__(self, edm_cfg: EDMConfig):
        super().__init__()
        self.edm_cfg = edm_cfg

    # --- to implement ---------------------------------------------------------------
    def condition(self, images: Tensor) -> dict[str, Any]:
        raise NotImplementedError

    @property
    def groups(self) -> list[tuple[str, int]]:
        """Named groups of the representation, in order: (name, dims)."""
        raise NotImplementedError

    def extra_losses(self, cond: dict[str, Any]) -> dict[str, tuple[Tensor, float]]:
        """Method losses as {name: (unweighted value, weight)}; default none."""
        return {}

    @property
    def paper_concepts(self) -> int | None:
        """FDAE's N for the paper protocol's 36 // (2N) PCA dimensions per group
        (`evaluate(..., concepts=)`); None: not an FDAE representation."""
        return None

    # --- shared ---------------------------------------------------------------------
    def denoise(self, x: Tensor, sigma: Tensor, cond: dict[str, Any]) -> Tensor:
        """D(x; sigma | cond), preconditioned in fp32."""
        return edm.denoise(self.unet, x, sigma, self.edm_cfg.sigma_data, **cond["unet"])

    def draw_noise(self, images: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """The training noise of one step: sigma (B,) then the fp32 noise (B, C, H, W), in
        that order from `generator` (kept out of compiled code: see fdae.train.fast_step)."""
        cfg = self.edm_cfg
        b = images.shape[0]
        sigma = edm.sample_training_sigmas(b, cfg.p_mean, cfg.p_std, device=images.device, generator=generator)
        noise = torch.randn(images.shape, device=images.device, generator=generator, dtype=torch.float32)
        return sigma, noise

    def loss(self, images: Tensor, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """EDM loss (Karras et al. Eq. 2 with lambda = 1/sigma^2 + 1/sigma_data^2) plus
        the method's weighted extra losses. Returns 'loss' (total) and every term."""
        sigma, noise = self.draw_noise(images, generator)
        return self.loss_given_noise(images, sigma, noise)

    def loss_given_noise(self, images: Tensor, sigma: Tensor, noise: Tensor) -> dict[str, Tensor]:
        """`loss` with its random draws given: a pure function of its inputs and the
        parameters (dropout aside), which torch.compile can trace as one graph."""
        cfg = self.edm_cfg
        y = images.float()
        x_t = y + noise.float() * sigma.reshape(-1, 1, 1, 1)
        cond = self.condition(images)
        denoised = self.denoise(x_t, sigma, cond)
        weight = edm.loss_weight(sigma, cfg.sigma_data).reshape(-1, 1, 1, 1)
        diffusion = (weight * (denoised - y) ** 2).mean()
        terms: dict[str, Tensor] = {"diffusion": diffusion}
        total = diffusion
        for name, (value, w) in self.extra_losses(cond).items():
            terms[name] = value.detach()
            if w:
                total = total + w * value.float()
        terms["loss"] = total
        return terms

    @torch.no_grad()
    def encode(self, images: Tensor) -> Tensor:
        """The representation (B, d) of images in [-1, 1], computed in eval mode."""
        was = self.training
        self.eval()
        try:
            return self.representation(images).float()
        finally:
            self.train(was)

    def representation(self, images: Tensor) -> Tensor:
        """The codes alone; methods override it to skip work the codes do not need."""
        return self.condition(images)["codes"]

    @torch.no_grad()
    def decode(self, cond: dict[str, Any], shape: tuple[int, ...], steps: int | None = None,
               generator: torch.Generator | None = None, device: torch.device | None = None,
               noise: Tensor | None = None) -> Tensor:
        """Sample images given a conditioning with Heun's sampler, from `noise` (unit
        Gaussian, e.g. shared by every cell of a swap grid) or fresh noise."""
        cfg = self.edm_cfg
        steps = steps or cfg.sample_steps
        device = device or next(self.parameters()).device
        sigmas = edm.karras_sigmas(steps, cfg.sigma_min, cfg.sigma_max, cfg.rho, device=device)
        if noise is None:
            noise = torch.randn(shape, device=device, generator=generator)
        x = noise.to(device=device, dtype=torch.float32).expand(shape) * sigmas[0]
        # Each denoised estimate is clipped to the data range [-1, 1], as the official
        # sampler does (clip_denoised), which keeps early high-noise steps in range.
        return edm.heun_sample(lambda x_, s_: self.denoise(x_, s_, cond).clamp(-1, 1), x, sigmas).clamp(-1, 1)

    @torch.no_grad()
    def reconstruct(self, images: Tensor, steps: int | None = None,
                    generator: torch.Generator | None = None) -> Tensor:
        was = self.training
        self.eval()
        try:
            cond = self.condition(images)
            return self.decode(cond, tuple(images.shape), steps, generator, images.device)
        finally:
            self.train(was)
