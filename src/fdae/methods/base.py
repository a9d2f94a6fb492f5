"""What every method is to the trainer, the metrics and the figures (`Method`), and the
shared part of the diffusion autoencoders (`DiffusionAutoencoder`).

A training step is split in two so that every method trains the same way under DDP,
gradient accumulation and exact resume: `draw(images, generator)` makes all of the
step's random draws from the shard's generator (the trainer saves and restores it), and
`loss_given_draws(images, draws, step)` is a pure function of its inputs and the weights
(compilable). One backward of the returned "loss" gives every parameter its gradient;
a method that updates some parameters with their own optimizer (FactorVAE's
discriminator) declares them in `extra_optimizers`, and the trainer steps all of its
optimizers in the same step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import torch
from torch import Tensor, nn

from fdae.config import EDMConfig, MethodConfig
from fdae.diffusion import edm
from fdae.diffusion.unet import UNet
from fdae.methods.dyga import GaussianAnchors, refit_every


@dataclass
class ExtraOptimizer:
    """Parameters that a method updates with an optimizer of their own, in the same
    training step as the main one (which gets every other trainable parameter)."""

    name: str
    params: list[nn.Parameter]
    make: Callable[[list[nn.Parameter]], torch.optim.Optimizer]


@dataclass
class TraversalAxis:
    """One row of a traversal figure: codes are moved along the unit `direction` so that
    their projection on it takes each of `values` in turn."""

    label: str
    direction: Tensor  # (D,)
    values: Tensor  # (K,)


class Method(nn.Module):
    """The interface every method implements, diffusion-based or not.

    Class attributes: `Config` (its config dataclass), `figures` (the figure names
    `fdae viz` draws for it). To implement: `draw`, `loss_given_draws`, `representation`,
    `groups`, `decode_codes`; optionally `extra_optimizers`, `frozen_modules`,
    `paper_concepts`, `traversal_axes`.
    """

    Config: ClassVar[type[MethodConfig]] = MethodConfig
    figures: ClassVar[tuple[str, ...]] = ("reconstructions", "traversals")
    # Sub-modules that `encode` never calls (a background evaluator leaves them out).
    decoder_modules: ClassVar[tuple[str, ...]] = ("unet",)
    # How the figures' images are decoded, for their captions (None: the method's default).
    sampler_note: ClassVar[str | None] = None
    # What of the loss is estimated from the whole batch (said when DDP or gradient
    # accumulation splits the batch into shards, each of which then estimates it alone).
    batch_estimates: ClassVar[str] = ""
    # How `traversal_axes` moves the codes, for the traversal figure's caption.
    traversal_note: ClassVar[str] = ("codes moved along each group's first principal direction (one group: its "
                                     "first principal directions), from the 5th to the 95th percentile over the sample")

    @classmethod
    def build(cls, cfg: Any, in_channels: int, image_size: int) -> "Method":
        """The method of a whole run config (`fdae.config.Config`) for these images."""
        return cls(cfg.method, in_channels, image_size)

    # --- training -------------------------------------------------------------------
    def draw(self, images: Tensor, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """Every random draw of one training step on `images`, from `generator`."""
        raise NotImplementedError

    def loss_given_draws(self, images: Tensor, draws: dict[str, Tensor], step: Tensor) -> dict[str, Tensor]:
        """The step's loss terms: 'loss' (what backward is called on) and any others
        (detached, logged). `step` (0-dim tensor): optimizer steps done before this one,
        for schedules that depend on it."""
        raise NotImplementedError

    def loss(self, images: Tensor, generator: torch.Generator | None = None, step: int = 0) -> dict[str, Tensor]:
        draws = self.draw(images, generator)
        return self.loss_given_draws(images, draws, torch.tensor(float(step), device=images.device))

    def extra_optimizers(self) -> list[ExtraOptimizer]:
        return []

    def frozen_modules(self) -> list[nn.Module]:
        """Sub-modules that are not trained: no gradients, kept in eval mode."""
        return []

    def periodic_due(self, step: int) -> bool:
        """Whether `periodic` has work after `step` steps (the trainer skips it otherwise)."""
        return False

    def periodic(self, step: int, draw_images, generator: torch.Generator) -> None:
        """Work between optimizer steps (Dynamic Gaussian Anchoring's refits), called after
        each step with the steps done so far, `draw_images(n)` (fresh training images) and
        a generator seeded from (run seed, step), the same on every rank, so the result
        is identical everywhere and after a resume; with the EMA weights in place when the
        run keeps an EMA. Default: nothing."""

    def freeze(self) -> None:
        for module in self.frozen_modules():
            module.requires_grad_(False)
            module.eval()

    def train(self, mode: bool = True) -> "Method":
        super().train(mode)
        for module in self.frozen_modules():
            module.eval()
        return self

    # --- the representation ----------------------------------------------------------
    @property
    def groups(self) -> list[tuple[str, int]]:
        """Named groups of the representation, in order: (name, dims)."""
        raise NotImplementedError

    @property
    def paper_concepts(self) -> int | None:
        """FDAE's N for the paper protocol's 36 // (2N) PCA dimensions per group
        (`evaluate(..., concepts=)`); None: not an FDAE representation."""
        return None

    def representation(self, images: Tensor) -> Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def encode(self, images: Tensor) -> Tensor:
        """The representation (B, d) of images in [-1, 1], computed in eval mode."""
        was = self.training
        self.eval()
        try:
            return self.representation(images).float()
        finally:
            self.train(was)

    # --- images from codes -----------------------------------------------------------
    def decode_codes(self, codes: Tensor, shape: tuple[int, ...], steps: int | None = None,
                     noise: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
        """Images (B, C, H, W) in [-1, 1] from representations (B, d). Stochastic
        decoders start every image from `noise` when given (shared by a figure's cells)."""
        raise NotImplementedError

    @torch.no_grad()
    def reconstruct(self, images: Tensor, steps: int | None = None,
                    generator: torch.Generator | None = None, noise: Tensor | None = None) -> Tensor:
        was = self.training
        self.eval()
        try:
            return self.decode_codes(self.representation(images), tuple(images.shape), steps, noise, generator)
        finally:
            self.train(was)

    def traversal_axes(self, codes: Tensor, rows: int = 10, values: int = 7) -> list[TraversalAxis]:
        """The rows of a traversal figure, from a sample of codes (N, d): one row per
        group along its first principal direction, or, for a single group, its first
        `rows` principal directions; values from the 5th to the 95th percentile of the
        sample's projections (codes of a trained encoder follow no fixed prior)."""
        axes = []
        groups = self.groups
        start = 0
        per_group = rows if len(groups) == 1 else 1
        for name, dims in groups:
            block = codes[:, start:start + dims].float()
            centred = block - block.mean(0)
            _, _, vh = torch.linalg.svd(centred, full_matrices=False)
            for k in range(min(per_group, vh.shape[0])):
                direction = torch.zeros(codes.shape[1], device=codes.device)
                direction[start:start + dims] = vh[k]
                proj = codes.float() @ direction
                lo, hi = torch.quantile(proj, torch.tensor([0.05, 0.95], device=codes.device))
                label = name if per_group == 1 else f"{name} PC{k + 1}"
                axes.append(TraversalAxis(label, direction, torch.linspace(float(lo), float(hi), values)))
            start += dims
        return axes[:max(rows, len(groups))]


class DiffusionAutoencoder(Method):
    """An encoder whose representation conditions an EDM denoiser. Subclasses set
    `self.unet` and implement `condition`, `condition_from_flat` and `groups`; the EDM
    loss, reconstruction and sampling are shared here.

    `condition(images)` returns a dict with:
      * "unet": keyword arguments for the U-Net (e.g. cond_map=..., latent=...);
      * "codes": the representation (B, d) used by the metrics;
      * anything else the method's `extra_losses` or figures need (masks, raw codes).
    """

    unet: UNet

    def __init__(self, edm_cfg: EDMConfig):
        super().__init__()
        self.edm_cfg = edm_cfg
        self.anchors: GaussianAnchors | None = None  # Dynamic Gaussian Anchoring, when on

    @classmethod
    def unet_options(cls, method_cfg: Any) -> dict[str, Any]:
        """The U-Net's conditioning inputs this method feeds (cond_channels, latent_dim)."""
        return {}

    @classmethod
    def anchor_units(cls, method_cfg: Any) -> tuple[int, int] | None:
        """(units, dims) of the features DyGA anchors (`dyga.enabled`); None: no units."""
        return None

    def unit_features(self, images: Tensor) -> Tensor:
        """The un-anchored unit features (B, units, dims) that DyGA's mixtures are fitted to."""
        raise NotImplementedError

    def periodic_due(self, step: int) -> bool:
        return self.anchors is not None and step % self.anchors.cfg.every == 0

    def periodic(self, step: int, draw_images, generator: torch.Generator) -> None:
        """Refit the anchors every `dyga.every` steps on the un-anchored unit features."""
        refit_every(self, self.anchors, step, draw_images, generator, self.unit_features)

    @classmethod
    def build(cls, cfg: Any, in_channels: int, image_size: int) -> "DiffusionAutoencoder":
        from fdae.methods import unet_spec

        spec = unet_spec(cfg, in_channels, image_size, **cls.unet_options(cfg.method))
        model = cls(cfg.method, spec, cfg.edm, in_channels, image_size)
        units = cls.anchor_units(cfg.method)
        if units is not None and getattr(cfg, "dyga", None) is not None and cfg.dyga.enabled:
            model.anchors = GaussianAnchors(*units, cfg.dyga)
        return model

    # --- to implement ---------------------------------------------------------------
    def condition(self, images: Tensor) -> dict[str, Any]:
        raise NotImplementedError

    def condition_from_flat(self, codes: Tensor) -> dict[str, Any]:
        """The conditioning of representations (B, d), as `condition` gives for images."""
        raise NotImplementedError

    def extra_losses(self, cond: dict[str, Any]) -> dict[str, tuple[Tensor, float]]:
        """Method losses as {name: (unweighted value, weight)}; default none."""
        return {}

    # --- shared ---------------------------------------------------------------------
    def denoise(self, x: Tensor, sigma: Tensor, cond: dict[str, Any]) -> Tensor:
        """D(x; sigma | cond), preconditioned in fp32."""
        return edm.denoise(self.unet, x, sigma, self.edm_cfg.sigma_data, **cond["unet"])

    def draw(self, images: Tensor, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        sigma, noise = self.draw_noise(images, generator)
        return {"sigma": sigma, "noise": noise}

    def draw_noise(self, images: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """The training noise of one step: sigma (B,) then the fp32 noise (B, C, H, W), in
        that order from `generator` (kept out of compiled code: see fdae.train.fast_step)."""
        cfg = self.edm_cfg
        b = images.shape[0]
        sigma = edm.sample_training_sigmas(b, cfg.p_mean, cfg.p_std, device=images.device, generator=generator)
        noise = torch.randn(images.shape, device=images.device, generator=generator, dtype=torch.float32)
        return sigma, noise

    def loss_given_draws(self, images: Tensor, draws: dict[str, Tensor], step: Tensor) -> dict[str, Tensor]:
        return self.loss_given_noise(images, draws["sigma"], draws["noise"])

    def loss_given_noise(self, images: Tensor, sigma: Tensor, noise: Tensor) -> dict[str, Tensor]:
        """EDM loss (Karras et al. Eq. 2 with lambda = 1/sigma^2 + 1/sigma_data^2) plus
        the method's weighted extra losses. Returns 'loss' (total) and every term."""
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
    def decode_codes(self, codes: Tensor, shape: tuple[int, ...], steps: int | None = None,
                     noise: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
        return self.decode(self.condition_from_flat(codes), shape, steps, generator, codes.device, noise)
