"""DisDiff (Yang et al., NeurIPS 2023), stage 2: decompose a frozen, pretrained DDPM
(stage 1, `fdae.methods.ddpm`) into N per-unit gradient fields, as its reference code
does (REFERENCE.md section 2).

* Encoder E: DisDiff's conv trunk, then Linear -> N units x D dims (6 x 32).
* Decoder G: a trainable copy of the frozen U-Net's middle and output halves, run on the
  frozen input half's features (its skips). Unit c's copy sees the frozen time embedding
  plus its part embedding, Linear(P[c]) with P = expm(W - W^T) (orthogonal: each unit a
  direction of its own), and its code z_c through a FiLM in every ResBlock, h (1 + s(z_c))
  + b(z_c), after the time embedding's scale-shift (the reference's two FiLMs, in its
  order, with stage 1's default `unet.scale_shift`; G inherits stage 1's U-Net options).
  All N run every step.
* eps_hat = eps_theta(x_t, t) + k_t sum_c G_c, k_t = -sqrt(alpha_t)(1 - abar_{t-1}) /
  sqrt(1 - abar_t) (PDAE's shift coefficient); L_r = |eps_hat - eps| (L1).
* Disentangling loss: per sample a unit c; eps_c = eps_theta + d_t G_c, d_t =
  -sqrt(1 - abar_t); x0 predicted from eps_theta (no gradient) and from eps_c, both
  encoded by a frozen copy of E refreshed every step (eval mode): zh, zh_c (N x D); z =
  E(x0) detached. Variant cross-entropy with logits_k = |zh_k - z_k| - |zh_c_k - z_k|,
  invariant cross-entropy with logits_k = |zh_k - zh_c_k|, label c; per-sample weight w =
  mean((x0(eps_theta) - x0(eps_c))^2), no gradient. L = L_r + lambda mean_b[w (CE_var +
  CE_inv)], lambda = 0.05. Its gradient reaches G (and the part embeddings), not E: E
  learns through L_r alone (G_c is evaluated again on the detached z_c for this loss).

fdae works in pixel space (the reference in a VQ latent space, whose decoder is the
identity here), so "decode to images" is the identity.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fdae.config import MethodConfig, config_error
from fdae.diffusion import ddpm
from fdae.diffusion.unet import UNet
from fdae.errors import FdaeError
from fdae.methods.base import Method
from fdae.methods.ddpm import DDPM
from fdae.nn.unit_encoders import DisDiffTrunk


@dataclass
class DisDiffConfig(MethodConfig):
    """DisDiff's section (stage 2); the U-Net and the diffusion schedule are stage 1's."""

    name: str = "disdiff"
    pretrained: str = ""  # the stage-1 run directory (a `ddpm` run): loaded and frozen
    num_units: int = 6  # N
    unit_dim: int = 32  # D
    encoder_width: int = 128
    part_dim: int = 128  # size of the orthogonal part embeddings P = expm(W - W^T)
    disentangle_weight: float = 0.05  # lambda (the reference's configs: 0.05; 0.01 on MPI3D)
    sample_steps: int = 50  # DDIM steps for reconstructions and figures
    SECTIONS: ClassVar[tuple[str, ...]] = ()

    def check(self) -> None:
        for key in ("num_units", "unit_dim", "encoder_width", "sample_steps"):
            if not getattr(self, key) >= 1:
                raise config_error(f"method.{key}", ">= 1", getattr(self, key), f"set method.{key} to a positive value")
        if self.part_dim < self.num_units:
            raise config_error("method.part_dim", f">= method.num_units ({self.num_units})", self.part_dim,
                               "each unit needs its own row of the orthogonal matrix P")
        if not self.disentangle_weight >= 0:
            raise config_error("method.disentangle_weight", ">= 0", self.disentangle_weight,
                               "0 trains the encoder with L_r alone (the baseline); DisDiff uses 0.05")
        if not self.pretrained:
            raise config_error("method.pretrained", "the directory of a DisDiff stage-1 run", self.pretrained,
                               "train stage 1 first (fdae train --config disdiff-shapes3d-synth-stage1 --run-dir "
                               "runs/disdiff-stage1), then set method.pretrained=runs/disdiff-stage1")


def load_stage1(path: str, data_name: str, image_size: int, in_channels: int = 3) -> DDPM:
    """Stage 1's model (its EMA weights when it has them), checked to be a DDPM trained on
    the same images; one clear message otherwise. Under `torch.device("meta")` (a
    background evaluator building the encoder only) it is the structure alone."""
    from fdae.train.checkpoint import load_run, run_config

    run = Path(path)
    hint = ("train stage 1 first (fdae train --config disdiff-shapes3d-synth-stage1 --run-dir RUN_DIR) and set "
            "method.pretrained=RUN_DIR")
    if not run.exists():
        raise FdaeError(f"method.pretrained: DisDiff's stage-1 run {run} does not exist; {hint}")
    try:
        cfg1 = run_config(run)
    except FdaeError as err:
        raise FdaeError(f"method.pretrained: {run} is not a usable stage-1 run ({err}); {hint}") from None
    if cfg1.method.name != "ddpm":
        raise FdaeError(f"method.pretrained: {run} is a {cfg1.method.name} run, not a DisDiff stage-1 "
                        f"(ddpm) run; {hint}")
    if (cfg1.data.name, cfg1.data.image_size) != (data_name, image_size):
        raise FdaeError(f"method.pretrained: stage 1 ({run}) was trained on {cfg1.data.name} at "
                        f"{cfg1.data.image_size} px, stage 2 trains on {data_name} at {image_size} px; "
                        "use the same data.name and data.image_size")
    if torch.empty(0).device.type == "meta":
        return DDPM.build(cfg1, in_channels, image_size)
    try:
        loaded = load_run(run, device="cpu")
    except FdaeError as err:
        raise FdaeError(f"method.pretrained: {run} is not a usable stage-1 run ({err}); {hint}") from None
    return loaded.method  # type: ignore[return-value]


class DisDiff(Method):
    """Encoder E, frozen DDPM eps_theta, per-unit fields G_c."""

    Config = DisDiffConfig
    figures = ("reconstructions", "traversals", "unit_swaps")
    decoder_modules = ("prior", "fields_net")  # what encode() never calls
    sampler_note = "deterministic DDIM with eps_theta + k_t sum_c G_c, one shared noise for every cell"

    @classmethod
    def build(cls, cfg: Any, in_channels: int, image_size: int) -> "DisDiff":
        prior = load_stage1(cfg.method.pretrained, cfg.data.name, image_size, in_channels)
        return cls(cfg.method, prior, in_channels, image_size)

    def __init__(self, cfg: DisDiffConfig, prior: DDPM, in_channels: int = 3, image_size: int = 64):
        super().__init__()
        self.cfg = cfg
        self.prior = prior
        self.prior.requires_grad_(False)
        n, d = cfg.num_units, cfg.unit_dim
        trunk = DisDiffTrunk(in_channels, cfg.encoder_width, image_size)
        self.encoder = nn.Sequential(trunk, nn.Linear(trunk.out_features, n * d))
        # G: the middle and output halves of a U-Net shaped as stage 1's, fed unit codes
        spec = prior.unet.spec
        from dataclasses import replace

        self.fields_net = UNet(replace(spec, latent_dim=d, latent_shift=True, skip_dropout=0.0))
        self.fields_net.down = nn.ModuleList()  # G runs on the frozen input half's features
        self.fields_net.conv_in = None
        self.fields_net.time_embed = None  # the frozen model's time embedding is used
        emb_dim = 4 * spec.channels
        self.part_w = nn.Parameter(torch.randn(cfg.part_dim, cfg.part_dim) * 0.02)
        self.part_proj = nn.Linear(cfg.part_dim, emb_dim)
        betas = prior.betas
        self.register_buffer("abar", ddpm.alphas_cumprod(betas), persistent=False)
        self.register_buffer("k_t", ddpm.shift_coefficient(betas), persistent=False)
        self.register_buffer("d_t", ddpm.disentangle_coefficient(betas), persistent=False)
        # the frozen copy of E of the disentangling loss: not a sub-module (no parameters
        # to train or save), refreshed from E at every step
        object.__setattr__(self, "_encoder_copy", copy.deepcopy(self.encoder).requires_grad_(False))

    def frozen_modules(self) -> list[nn.Module]:
        return [self.prior]

    # --- pieces ----------------------------------------------------------------------
    def part_embeddings(self) -> Tensor:
        """P[:N]: the first N rows of the orthogonal matrix expm(W - W^T)."""
        return torch.linalg.matrix_exp(self.part_w - self.part_w.T)[: self.cfg.num_units]

    def unit_codes(self, images: Tensor) -> Tensor:
        """z (B, N, D)."""
        return self.encoder(images).reshape(images.shape[0], self.cfg.num_units, self.cfg.unit_dim)

    def frozen_pass(self, x_t: Tensor, t: Tensor) -> tuple[Tensor, Tensor, list[Tensor], Tensor]:
        """The frozen model on x_t: its time embedding (before SiLU), the input half's
        deepest features and skips, and eps_theta(x_t, t); no gradient."""
        unet = self.prior.unet
        with torch.no_grad():
            emb_raw = unet.embed_time(t.float() / unet.spec.time_scale, x_t.dtype)
            emb = F.silu(emb_raw)
            h, hs = unet.down_half(x_t, emb)
            eps = unet.up_half(h, hs, emb).float()
        return emb_raw, h, hs, eps

    def fields(self, h: Tensor, hs: list[Tensor], emb_raw: Tensor, z: Tensor, unit: Tensor | None = None) -> Tensor:
        """G_c for every unit (B, N, C, H, W) or, given `unit` (B,), for that unit of each
        sample (B, C, H, W): G's halves on the frozen features, with the frozen time
        embedding plus unit c's part embedding, and z_c through the latent path."""
        g, parts = self.fields_net, self.part_proj(self.part_embeddings())  # N, E
        b = h.shape[0]
        if unit is not None:
            idx = torch.arange(b, device=h.device)
            emb = F.silu(emb_raw + parts[unit])
            return g.up_half(h, hs, emb, g.embed_latent(z[idx, unit])).float()
        n = z.shape[1]
        rep = lambda a: a[:, None].expand(b, n, *a.shape[1:]).reshape(b * n, *a.shape[1:])  # noqa: E731
        emb = F.silu(emb_raw[:, None] + parts[None]).reshape(b * n, -1)
        out = g.up_half(rep(h), [rep(s) for s in hs], emb, g.embed_latent(z.reshape(b * n, -1)))
        return out.float().reshape(b, n, *out.shape[1:])

    def eps_hat(self, x_t: Tensor, t: Tensor, z: Tensor) -> Tensor:
        """eps_theta + k_t sum_c G_c."""
        emb_raw, h, hs, eps = self.frozen_pass(x_t, t)
        return eps + ddpm.at(self.k_t, t, eps) * self.fields(h, hs, emb_raw, z).sum(1)

    # --- training ----------------------------------------------------------------------
    def draw(self, images: Tensor, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        b = images.shape[0]
        t = torch.randint(0, self.abar.shape[0], (b,), device=images.device, generator=generator)
        noise = torch.randn(images.shape, device=images.device, generator=generator)
        unit = torch.randint(0, self.cfg.num_units, (b,), device=images.device, generator=generator)
        return {"t": t, "noise": noise, "unit": unit}

    def loss_given_draws(self, images: Tensor, draws: dict[str, Tensor], step: Tensor) -> dict[str, Tensor]:
        x0 = images.float()
        t, noise, unit = draws["t"], draws["noise"], draws["unit"]
        x_t = ddpm.q_sample(x0, t, noise, self.abar)
        z = self.unit_codes(x0)
        emb_raw, h, hs, eps = self.frozen_pass(x_t, t)
        eps_hat = eps + ddpm.at(self.k_t, t, eps) * self.fields(h, hs, emb_raw, z).sum(1)
        recon = (eps_hat - noise).abs().mean()
        terms = {"l_r": recon.detach()}
        loss = recon
        if self.cfg.disentangle_weight:
            # unit c's field again, from the detached code: this loss trains G, not E
            field_c = self.fields(h, hs, emb_raw, z.detach(), unit)
            dis = self.disentangle_loss(x0, x_t, t, eps, field_c, z.detach(), unit)
            terms["l_dis"] = dis.detach()
            loss = loss + self.cfg.disentangle_weight * dis
        terms["loss"] = loss
        return terms

    def disentangle_loss(self, x0: Tensor, x_t: Tensor, t: Tensor, eps: Tensor, field_c: Tensor, z: Tensor,
                         unit: Tensor) -> Tensor:
        """mean_b[w (CE_variant + CE_invariant)] (the module docstring), given unit c's
        field G_c (B, C, H, W) and the detached codes z (B, N, D)."""
        b = x0.shape[0]
        eps_c = eps + ddpm.at(self.d_t, t, eps) * field_c
        with torch.no_grad():
            x0_theta = ddpm.predict_x0(x_t, t, eps, self.abar)
        x0_c = ddpm.predict_x0(x_t, t, eps_c, self.abar)
        enc = self._refreshed_copy()
        n, d = self.cfg.num_units, self.cfg.unit_dim
        with torch.no_grad():
            zh = enc(x0_theta).reshape(b, n, d)
        zh_c = enc(x0_c).reshape(b, n, d)
        return disdiff_cross_entropies(zh, zh_c, z, unit, x0_theta, x0_c)

    def _refreshed_copy(self) -> nn.Module:
        """The frozen copy of E, with E's current weights and statistics, in eval mode."""
        enc: nn.Module = self._encoder_copy  # type: ignore[assignment]
        device = next(self.encoder.parameters()).device
        if next(enc.parameters()).device != device:
            enc.to(device)
        with torch.no_grad():
            for dst, src in zip(enc.state_dict().values(), self.encoder.state_dict().values()):
                dst.copy_(src)
        return enc.eval()

    # --- the representation --------------------------------------------------------------
    @property
    def groups(self) -> list[tuple[str, int]]:
        return [(f"unit{c}", self.cfg.unit_dim) for c in range(self.cfg.num_units)]

    def representation(self, images: Tensor) -> Tensor:
        return self.encoder(images)

    @torch.no_grad()
    def decode_codes(self, codes: Tensor, shape: tuple[int, ...], steps: int | None = None,
                     noise: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
        """Deterministic DDIM with eps_hat = eps_theta + k_t sum_c G_c(z), from `noise`."""
        device = codes.device
        z = codes.reshape(codes.shape[0], self.cfg.num_units, self.cfg.unit_dim)
        if noise is None:
            noise = torch.randn(shape, device=device, generator=generator)
        x_T = noise.to(device=device, dtype=torch.float32).expand(shape)

        return ddpm.ddim_sample(lambda x, t: self.eps_hat(x, t, z), x_T, self.abar, steps or self.cfg.sample_steps).clamp(-1, 1)


def disdiff_cross_entropies(zh: Tensor, zh_c: Tensor, z: Tensor, unit: Tensor, x0_theta: Tensor,
                            x0_c: Tensor) -> Tensor:
    """DisDiff's weighted variant + invariant cross-entropies, averaged over the batch:
    logits_var_k = |zh_k - z_k| - |zh_c_k - z_k|, logits_inv_k = |zh_k - zh_c_k| (norms
    over each unit's D dims), label = the unit whose field was added; weight w =
    mean((x0_theta - x0_c)^2) per sample, without gradient."""
    variant = (zh - z).norm(dim=-1) - (zh_c - z).norm(dim=-1)
    invariant = (zh - zh_c).norm(dim=-1)
    ce = F.cross_entropy(variant, unit, reduction="none") + F.cross_entropy(invariant, unit, reduction="none")
    w = ((x0_theta - x0_c) ** 2).flatten(1).mean(1).detach()
    return (w * ce).mean()
