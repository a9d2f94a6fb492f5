"""CL-Dis (Jin et al., ECCV 2024), as fdae reads its abstract (docs/cldis.md): a Diff-AE
backbone and a beta-VAE co-pilot trained together in a closed loop.

* VAE-latent distillation: the first `distill_dims` units of the Diff-AE's semantic code
  z_sem are a Gaussian (a mean, which conditions the U-Net and is the representation, and
  a log-variance head) pulled toward the co-pilot's posterior by
  L_dt = KL(q_vae(z|x) || q_sem(z|x)), the teacher detached: it shapes the backbone only.
* Diffusion-wise feedback: every `feedback_every` steps the backbone measures how much of
  its denoising loss the semantic code removes, u = 1 - L(own code) / L(swapped code) in
  [0, 1], on fresh images at fixed noise levels of its training distribution. u sets the
  co-pilot's constraint: capacity mode trains the VAE on recon + gamma |KL - c_max u|
  (Burgess et al.'s capacity, driven by the diffusion model's progress instead of a
  hand-set schedule); beta mode on recon + beta_t KL with beta_t moving from `beta` to
  `beta_min` as u grows; none keeps beta fixed (the open-loop ablation).

The two networks have their own optimizers (the co-pilot: Adam at `vae_lr`, as
disentanglement_lib's VAEs) and one backward gives each exactly its own gradient.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from fdae.config import EDMConfig, MethodConfig, config_error
from fdae.diffusion import edm
from fdae.diffusion.unet import UNet, UNetSpec
from fdae.methods.base import DiffusionAutoencoder, ExtraOptimizer
from fdae.methods.vae.architecture import ConvEncoder, DeconvDecoder
from fdae.methods.vae.losses import bernoulli_reconstruction, gaussian_kl, sample_latent
from fdae.nn.resnet import ResNet18

FEEDBACK_MODES = ("capacity", "beta", "none")
# Noise levels of the feedback: these quantiles of EDM's log-normal training distribution.
FEEDBACK_QUANTILES = (0.1, 0.3, 0.5, 0.7, 0.9)


@dataclass
class CLDisConfig(MethodConfig):
    name: str = "cldis"
    distill_dims: int = 10  # units of z_sem distilled from the co-pilot (= the VAE's latents)
    free_dims: int = 6  # further units of z_sem, shaped by the diffusion loss alone
    encoder_width: int = 64  # the backbone's ResNet-18 base width
    distill_weight: float = 1.0  # lambda_dt
    feedback: str = "beta"  # beta | capacity | none
    feedback_every: int = 50  # steps between measurements of u
    feedback_batch: int = 32  # images per measurement
    c_max: float = 25.0  # capacity mode: nats at u = 1
    gamma: float = 1000.0  # capacity mode: weight of |KL - C|
    beta: float = 4.0  # beta mode: beta at u = 0; none: the fixed beta
    beta_min: float = 1.0  # beta mode: beta at u = 1
    vae_lr: float = 1e-4
    vae_betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    SECTIONS: ClassVar[tuple[str, ...]] = ("unet", "edm")

    def check(self) -> None:
        for key in ("distill_dims", "encoder_width", "feedback_every", "feedback_batch"):
            if not getattr(self, key) >= 1:
                raise config_error(f"method.{key}", ">= 1", getattr(self, key), f"set method.{key} to a positive integer")
        if not self.free_dims >= 0:
            raise config_error("method.free_dims", ">= 0", self.free_dims, "0 makes all of z_sem distilled")
        if self.feedback not in FEEDBACK_MODES:
            raise config_error("method.feedback", f"one of {', '.join(FEEDBACK_MODES)}", self.feedback,
                               "capacity is the closed loop; none is the open-loop ablation")
        for key in ("distill_weight", "c_max", "gamma", "beta", "beta_min"):
            if not getattr(self, key) >= 0:
                raise config_error(f"method.{key}", ">= 0", getattr(self, key), f"set method.{key} to 0 or more")
        if not self.vae_lr > 0:
            raise config_error("method.vae_lr", "> 0", self.vae_lr, "disentanglement_lib's VAEs use 1e-4")
        if len(self.vae_betas) != 2 or not all(0 <= b < 1 for b in self.vae_betas):
            raise config_error("method.vae_betas", "two numbers in [0, 1)", self.vae_betas, "use [0.9, 0.999]")

    @property
    def latent_dim(self) -> int:
        return self.distill_dims + self.free_dims


def distillation_kl(teacher_mean: Tensor, teacher_log_var: Tensor, student_mean: Tensor,
                    student_log_var: Tensor) -> Tensor:
    """L_dt = KL(N(mu_t, s_t^2) || N(mu_s, s_s^2)), summed over units, averaged over the
    batch: 0.5 sum (log s_s^2 - log s_t^2 + (s_t^2 + (mu_t - mu_s)^2) / s_s^2 - 1)."""
    ratio = (teacher_log_var - student_log_var).exp()
    gap = (teacher_mean - student_mean).square() * (-student_log_var).exp()
    return (0.5 * (ratio + gap - 1 - (teacher_log_var - student_log_var)).sum(1)).mean()


def feedback_share(loss_own: Tensor, loss_swapped: Tensor) -> Tensor:
    """u = 1 - L(own code) / L(swapped code), clipped to [0, 1]: the share of the
    denoising loss that the semantic code removes (0: the code is ignored)."""
    return (1 - loss_own / loss_swapped.clamp_min(1e-12)).clamp(0.0, 1.0)


def vae_constraint(kl: Tensor, u: Tensor, cfg: CLDisConfig) -> tuple[Tensor, dict[str, Tensor]]:
    """The co-pilot's regulariser under the feedback u, and its logged settings."""
    if cfg.feedback == "capacity":
        c = cfg.c_max * u
        return cfg.gamma * (kl - c).abs(), {"capacity": c.detach()}
    beta = cfg.beta + (cfg.beta_min - cfg.beta) * u if cfg.feedback == "beta" else torch.full_like(u, cfg.beta)
    return beta * kl, {"beta": beta.detach()}


class CLDis(DiffusionAutoencoder):
    """Diff-AE backbone + beta-VAE co-pilot, closed by distillation and diffusion feedback."""

    Config = CLDisConfig
    decoder_modules = ("unet", "vae_decoder")

    @classmethod
    def unet_options(cls, method_cfg: CLDisConfig) -> dict[str, int]:
        return {"latent_dim": method_cfg.latent_dim}

    def __init__(self, cfg: CLDisConfig, unet_spec: UNetSpec, edm_cfg: EDMConfig,
                 in_channels: int = 3, image_size: int = 64):
        super().__init__(edm_cfg)
        self.cfg = cfg
        self.encoder = ResNet18(in_channels, cfg.encoder_width)
        self.project = nn.Linear(self.encoder.out_features, cfg.latent_dim)
        self.student_log_var = nn.Linear(self.encoder.out_features, cfg.distill_dims)
        self.unet = UNet(unet_spec)
        self.vae_encoder = ConvEncoder(in_channels, cfg.distill_dims, image_size)
        self.vae_decoder = DeconvDecoder(cfg.distill_dims, in_channels, image_size)
        # The last measured u (a buffer: checkpointed, so a resumed run continues exactly).
        self.register_buffer("feedback_u", torch.zeros(()))

    # --- the representation ----------------------------------------------------------
    @property
    def groups(self) -> list[tuple[str, int]]:
        units = [(f"z{i + 1}", 1) for i in range(self.cfg.distill_dims)]
        return units + ([("free", self.cfg.free_dims)] if self.cfg.free_dims else [])

    def semantic(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """z_sem (B, distill + free) and the distilled units' log-variances (B, distill)."""
        h = self.encoder(images)
        return self.project(h), self.student_log_var(h)

    def condition(self, images: Tensor) -> dict[str, Any]:
        z, log_var = self.semantic(images)
        return {"unet": {"latent": z}, "codes": z, "student_log_var": log_var}

    def condition_from_flat(self, codes: Tensor) -> dict[str, Any]:
        return {"unet": {"latent": codes}, "codes": codes}

    def vae_posterior(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """The co-pilot's q(z|x): means and log-variances (B, distill); it sees [0, 1]."""
        mean, log_var = self.vae_encoder((images.float() + 1) / 2)
        return mean.float(), log_var.float()

    # --- training -------------------------------------------------------------------
    def extra_optimizers(self) -> list[ExtraOptimizer]:
        cfg = self.cfg

        def make(params):
            return torch.optim.Adam(params, lr=cfg.vae_lr, betas=tuple(cfg.vae_betas), eps=1e-8)

        params = list(self.vae_encoder.parameters()) + list(self.vae_decoder.parameters())
        return [ExtraOptimizer("vae", params, make)]

    def draw(self, images: Tensor, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        sigma, noise = self.draw_noise(images, generator)
        eps = torch.randn(images.shape[0], self.cfg.distill_dims, device=images.device, generator=generator)
        return {"sigma": sigma, "noise": noise, "eps": eps}

    def loss_terms(self, images: Tensor, draws: dict[str, Tensor]) -> dict[str, Tensor]:
        """The step's three objectives, not detached (the tests follow each gradient):
        'diffusion' (the backbone's EDM loss), 'distill' (L_dt), 'vae_loss' (the co-pilot's
        reconstruction + constraint), and what is logged beside them."""
        cfg = self.cfg
        # the backbone: EDM loss given z_sem
        y = images.float()
        sigma = draws["sigma"]
        cond = self.condition(images)
        denoised = self.denoise(y + draws["noise"].float() * sigma.reshape(-1, 1, 1, 1), sigma, cond)
        weight = edm.loss_weight(sigma, self.edm_cfg.sigma_data).reshape(-1, 1, 1, 1)
        diffusion = (weight * (denoised - y) ** 2).mean()
        # the co-pilot: a beta-VAE whose constraint the feedback sets
        mean, log_var = self.vae_posterior(images)
        z = sample_latent(mean, log_var, draws["eps"].float())
        reconstruction = bernoulli_reconstruction(self.vae_decoder(z), (y + 1) / 2)
        kl = gaussian_kl(mean, log_var)
        reg, settings = vae_constraint(kl, self.feedback_u, cfg)
        # the distillation: the co-pilot's posterior (detached) teaches z_sem's first units
        distill = distillation_kl(mean.detach(), log_var.detach(), cond["codes"][:, :cfg.distill_dims].float(),
                                  cond["student_log_var"].float())
        return {"diffusion": diffusion, "distill": distill, "vae_loss": reconstruction + reg,
                "vae_reconstruction": reconstruction, "vae_kl": kl, **settings}

    def loss_given_draws(self, images: Tensor, draws: dict[str, Tensor], step: Tensor) -> dict[str, Tensor]:
        terms = self.loss_terms(images, draws)
        total = terms["diffusion"] + self.cfg.distill_weight * terms["distill"] + terms["vae_loss"]
        logged = {k: v.detach() for k, v in terms.items()}
        return {"loss": total, **logged, "feedback_u": self.feedback_u.detach().clone()}

    # --- the feedback -----------------------------------------------------------------
    def periodic_due(self, step: int) -> bool:
        return self.cfg.feedback != "none" and step % self.cfg.feedback_every == 0

    def periodic(self, step: int, draw_images, generator: torch.Generator) -> None:
        """Measure u on `feedback_batch` fresh images (eval mode; the EMA weights when the
        run keeps them) and keep it for the next steps' VAE constraint."""
        if not self.periodic_due(step):
            return
        was = self.training
        self.eval()
        try:
            with torch.no_grad():
                self.feedback_u.copy_(self.measure_feedback(draw_images(self.cfg.feedback_batch), generator))
        finally:
            self.train(was)

    @torch.no_grad()
    def measure_feedback(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """u on `images`: EDM-weighted denoising losses at the FEEDBACK_QUANTILES noise
        levels with each image's own code and with the next image's (the batch rolled by
        one), from the same noise."""
        cfg = self.edm_cfg
        y = images.float()
        cond = self.condition(images)
        swapped = self.condition_from_flat(cond["codes"].roll(1, dims=0))
        normal = torch.distributions.Normal(0.0, 1.0)
        own = torch.zeros((), device=y.device)
        other = torch.zeros((), device=y.device)
        for q in FEEDBACK_QUANTILES:
            s = float(torch.exp(cfg.p_mean + cfg.p_std * normal.icdf(torch.tensor(q))))
            sigma = torch.full((y.shape[0],), s, device=y.device)
            x = y + s * torch.randn(y.shape, device=y.device, generator=generator)
            w = float(edm.loss_weight(torch.tensor(s), cfg.sigma_data))
            own = own + w * (self.denoise(x, sigma, cond) - y).square().mean()
            other = other + w * (self.denoise(x, sigma, swapped) - y).square().mean()
        return feedback_share(own, other)

    def representation(self, images: Tensor) -> Tensor:
        return self.project(self.encoder(images))
