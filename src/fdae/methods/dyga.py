"""Dynamic Gaussian Anchoring (DyGA; the follow-up to EncDiff, WACV 2025), for any method
whose representation is made of units (EncDiff's tokens, FDAE's content codes).

Every `dyga.every` steps one Gaussian mixture per unit is fitted, in torch on the training
device, to that unit's feature over `dyga.num_samples` encoded training images (with the
EMA weights when the run keeps an EMA: the weights evaluation uses, and the reference's
validation-time fit):

1. features min-max normalised per dimension (the reference does the same);
2. `components` means drawn from the samples, identity covariances, equal weights;
   `em_steps` EM iterations with full covariances (+ `reg` I);
3. up to `split_rounds` rounds: a component whose points (responsibility > 0.5) lie on
   average farther than `split_distance` from its mean is split in two by a 2-component
   EM on those points, while the mixture has fewer than `max_components`;
4. components whose total responsibility is below `min_mass` are pruned (the heaviest
   is always kept); `em_steps` more EM iterations.

Anchoring, in training and at evaluation: cq = the raw-space mean of the unit's most
likely component, lam = weight * exp(-mean_d |(c - cq) / (c + 1e-6)|), and
c <- lam cq + (1 - lam) c.

Decisions where the reference code differs from the paper (written down, as asked):
* the reference also splits components at random half the time; fdae splits only the
  components the width criterion names, so a fit depends on the data, not on a coin;
* the reference mixes the mean from the *normalised* space into the raw feature; fdae maps
  each mean back to raw space (mean * (hi - lo) + lo) before anchoring;
* lam and cq carry no gradient: the anchor is a target, the feature is what learns;
* the fits live in buffers of fixed size (max_components per unit, unused ones masked),
  so they are part of every checkpoint and a resumed run anchors exactly as before.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor, nn

from fdae.config import DygaConfig

__all__ = ["DygaConfig", "GaussianAnchors", "Mixture", "anchor_weight", "em", "fit_mixtures", "prune"]


# ------------------------------------------------------------------ the mixture
def gaussian_log_prob(x: Tensor, means: Tensor, covs: Tensor) -> Tensor:
    """log N(x | mean_k, cov_k) for x (U, n, d), means (U, K, d), covs (U, K, d, d) -> (U, n, K)."""
    d = x.shape[-1]
    chol = torch.linalg.cholesky(covs)  # U, K, d, d
    half_logdet = torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)  # U, K
    out = []
    for k in range(means.shape[1]):  # one component at a time: memory U * n * d
        diff = (x - means[:, k : k + 1]).transpose(1, 2)  # U, d, n
        z = torch.linalg.solve_triangular(chol[:, k], diff, upper=False)
        out.append(-0.5 * (z * z).sum(1) - half_logdet[:, k : k + 1] - 0.5 * d * math.log(2 * math.pi))
    return torch.stack(out, dim=-1)


def responsibilities(x: Tensor, means: Tensor, covs: Tensor, log_w: Tensor, active: Tensor) -> Tensor:
    """Posterior of each component (U, n, K); inactive components get 0."""
    logp = gaussian_log_prob(x, means, covs) + log_w[:, None, :]
    logp = logp.masked_fill(~active[:, None, :], float("-inf"))
    return torch.softmax(logp, dim=-1)


def em(x: Tensor, means: Tensor, covs: Tensor, log_w: Tensor, active: Tensor, steps: int,
       reg: float) -> tuple[Tensor, Tensor, Tensor]:
    """`steps` EM iterations of full-covariance mixtures, one per unit (batched)."""
    n, d = x.shape[1], x.shape[2]
    eye = torch.eye(d, dtype=x.dtype, device=x.device)
    for _ in range(steps):
        r = responsibilities(x, means, covs, log_w, active)  # U, n, K
        nk = r.sum(1)  # U, K
        safe = nk.clamp_min(1e-10)
        new_means = torch.einsum("unk,und->ukd", r, x) / safe[..., None]
        second = torch.stack([torch.einsum("un,uni,unj->uij", r[..., k], x, x) for k in range(means.shape[1])], 1)
        new_covs = second / safe[..., None, None] - new_means[..., :, None] * new_means[..., None, :]
        new_covs = 0.5 * (new_covs + new_covs.transpose(-1, -2)) + reg * eye
        keep = (active & (nk > 1e-8))[..., None]  # an empty component keeps its parameters
        means = torch.where(keep, new_means, means)
        covs = torch.where(keep[..., None], new_covs, covs)
        log_w = torch.where(active, torch.log(safe / n), log_w)
    return means, covs, log_w


@dataclass
class Mixture:
    means: Tensor  # U, K, d (normalised space)
    covs: Tensor  # U, K, d, d
    log_w: Tensor  # U, K
    active: Tensor  # U, K (bool)


def fit_mixtures(x: Tensor, cfg: DygaConfig, generator: torch.Generator) -> Mixture:
    """Fit one mixture per unit to normalised features x (U, n, d), as the module docstring says."""
    u, n, d = x.shape
    kmax = cfg.max_components
    dev, dt = x.device, x.dtype
    k0 = min(cfg.components, n)
    means = torch.zeros(u, kmax, d, dtype=dt, device=dev)
    picks = torch.stack([torch.randperm(n, generator=generator, device=generator.device)[:k0] for _ in range(u)]).to(dev)
    means[:, :k0] = torch.gather(x, 1, picks[..., None].expand(u, k0, d))
    covs = torch.eye(d, dtype=dt, device=dev).expand(u, kmax, d, d).clone()
    active = torch.zeros(u, kmax, dtype=torch.bool, device=dev)
    active[:, :k0] = True
    log_w = torch.where(active, torch.full_like(means[..., 0], -math.log(k0)), torch.full_like(means[..., 0], -math.inf))
    means, covs, log_w = em(x, means, covs, log_w, active, cfg.em_steps, cfg.reg)
    for _ in range(cfg.split_rounds):
        if not _split_wide(x, means, covs, log_w, active, cfg):
            break
        means, covs, log_w = em(x, means, covs, log_w, active, cfg.em_steps, cfg.reg)
    return prune(x, Mixture(means, covs, log_w, active), cfg)


def prune(x: Tensor, mix: Mixture, cfg: DygaConfig) -> Mixture:
    """Drop the components whose total responsibility is below `min_mass` (each unit keeps
    its heaviest), renormalise the weights, then `em_steps` more EM iterations."""
    mass = responsibilities(x, mix.means, mix.covs, mix.log_w, mix.active).sum(1)
    heaviest = torch.nn.functional.one_hot(mass.argmax(1), mix.active.shape[1]).bool()
    active = mix.active & ((mass >= cfg.min_mass) | heaviest)
    log_w = torch.where(active, mix.log_w, torch.full_like(mix.log_w, -math.inf))
    log_w = log_w - torch.logsumexp(log_w, dim=1, keepdim=True)
    means, covs, log_w = em(x, mix.means, mix.covs, log_w, active, cfg.em_steps, cfg.reg)
    return Mixture(means, covs, log_w, active)


def _split_wide(x: Tensor, means: Tensor, covs: Tensor, log_w: Tensor, active: Tensor, cfg: DygaConfig) -> bool:
    """One split round, in place: each too-wide component becomes two (a 2-component EM on
    its points started at mean -/+ the principal standard deviation). True if any split."""
    r = responsibilities(x, means, covs, log_w, active)
    split_any = False
    for unit in range(x.shape[0]):
        for k in torch.nonzero(active[unit]).flatten().tolist():
            free = torch.nonzero(~active[unit]).flatten()
            if len(free) == 0:
                break
            pts = x[unit][r[unit, :, k] > 0.5]
            if len(pts) < 4 or (pts - means[unit, k]).norm(dim=1).mean() <= cfg.split_distance:
                continue
            evals, evecs = torch.linalg.eigh(covs[unit, k])
            step = evecs[:, -1] * evals[-1].clamp_min(0).sqrt()
            m2 = torch.stack([means[unit, k] - step, means[unit, k] + step])[None]
            c2 = covs[unit, k].expand(1, 2, *covs.shape[-2:]).clone()
            on = torch.ones(1, 2, dtype=torch.bool, device=x.device)
            lw2 = torch.full((1, 2), -math.log(2.0), dtype=x.dtype, device=x.device)
            m2, c2, lw2 = em(pts[None], m2, c2, lw2, on, cfg.em_steps, cfg.reg)
            j = int(free[0])
            w = log_w[unit, k]
            means[unit, k], means[unit, j] = m2[0, 0], m2[0, 1]
            covs[unit, k], covs[unit, j] = c2[0, 0], c2[0, 1]
            log_w[unit, k], log_w[unit, j] = w + lw2[0, 0], w + lw2[0, 1]
            active[unit, j] = True
            split_any = True
    return split_any


# ------------------------------------------------------------------ the anchors
class GaussianAnchors(nn.Module):
    """The fitted mixtures of `units` features of `dim` dimensions, as buffers, and the
    anchoring they define. Identity until the first fit."""

    def __init__(self, units: int, dim: int, cfg: DygaConfig):
        super().__init__()
        self.cfg = cfg
        k = cfg.max_components
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))
        self.register_buffer("lo", torch.zeros(units, dim))
        self.register_buffer("hi", torch.ones(units, dim))
        self.register_buffer("means", torch.zeros(units, k, dim))  # normalised space
        self.register_buffer("covs", torch.eye(dim).expand(units, k, dim, dim).clone())
        # unused components: masked by `active`; stored as 0 so that a checkpoint holds
        # finite numbers only (fdae refuses checkpoints with NaN or infinite values)
        self.register_buffer("log_w", torch.zeros(units, k))
        self.register_buffer("active", torch.zeros(units, k, dtype=torch.bool))

    def raw_means(self) -> Tensor:
        """Each component's mean in the feature's own (raw) space: (U, K, d)."""
        return self.means * (self.hi - self.lo)[:, None] + self.lo[:, None]

    @torch.no_grad()
    def fit(self, features: Tensor, generator: torch.Generator) -> None:
        """Fit every unit's mixture to features (n, U, d), in float64 on their device."""
        x = features.detach().transpose(0, 1).double()  # U, n, d
        lo, hi = x.amin(1), x.amax(1)
        xn = (x - lo[:, None]) / (hi - lo).clamp_min(1e-12)[:, None]
        mix = fit_mixtures(xn, self.cfg, generator)
        self.lo.copy_(lo), self.hi.copy_(hi)
        self.means.copy_(mix.means), self.covs.copy_(mix.covs)
        self.log_w.copy_(torch.where(mix.active, mix.log_w, 0.0)), self.active.copy_(mix.active)
        self.fitted.fill_(True)

    def nearest(self, c: Tensor) -> Tensor:
        """cq: the raw mean of each feature's most likely component, (B, U, d)."""
        with torch.no_grad():
            x = c.detach().transpose(0, 1).double()
            xn = (x - self.lo[:, None].double()) / (self.hi - self.lo).double().clamp_min(1e-12)[:, None]
            post = responsibilities(xn, self.means.double(), self.covs.double(), self.log_w.double(), self.active)
            k = post.argmax(-1)  # U, B
            raw = self.raw_means()
            cq = torch.gather(raw, 1, k[..., None].expand(*k.shape, raw.shape[-1]))  # U, B, d
        return cq.transpose(0, 1).to(c.dtype)

    def forward(self, c: Tensor) -> Tensor:
        """Anchor unit features c (B, U, d): lam cq + (1 - lam) c."""
        if not bool(self.fitted):
            return c
        cq = self.nearest(c)
        lam = anchor_weight(c.detach(), cq, self.cfg.weight)
        return lam * cq + (1.0 - lam) * c


def anchor_weight(c: Tensor, cq: Tensor, weight: float) -> Tensor:
    """lam = weight * exp(-mean_d |(c - cq) / (c + 1e-6)|), one per (sample, unit): (B, U, 1)."""
    return weight * torch.exp(-((c - cq) / (c + 1e-6)).abs().mean(-1, keepdim=True))


def refit_every(method: nn.Module, anchors: GaussianAnchors | None, step: int,
                draw_images: Callable[[int], Tensor], generator: torch.Generator,
                features_of: Callable[[Tensor], Tensor]) -> bool:
    """A method's between-step hook: every `dyga.every` steps, refit `anchors` on the
    un-anchored unit features (n, U, d) of `num_samples` fresh training images, computed in
    eval mode (BatchNorm's running statistics are left alone). True when it fitted."""
    if anchors is None or step % anchors.cfg.every:
        return False
    was = method.training
    method.eval()
    try:
        with torch.no_grad():
            n = anchors.cfg.num_samples
            feats = [features_of(draw_images(min(256, n - i))) for i in range(0, n, 256)]
        anchors.fit(torch.cat(feats), generator)
    finally:
        method.train(was)
    return True
