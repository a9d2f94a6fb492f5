"""The VAE objectives of disentanglement_lib (methods/unsupervised/vae.py), one function
per formula, named as there. Shapes: means, log-variances and samples (B, L)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def bernoulli_reconstruction(logits: Tensor, targets: Tensor) -> Tensor:
    """Sigmoid cross-entropy of targets in [0, 1] under logits, summed over pixels,
    averaged over the batch (make_reconstruction_loss, activation 'logits')."""
    per_pixel = F.binary_cross_entropy_with_logits(logits.float(), targets.float(), reduction="none")
    return per_pixel.flatten(1).sum(1).mean()


def gaussian_kl(mean: Tensor, log_var: Tensor) -> Tensor:
    """KL(N(mean, exp(log_var)) || N(0, I)), summed over latents, averaged over the batch:
    mean_b 0.5 sum_l (mean^2 + exp(log_var) - log_var - 1) (compute_gaussian_kl)."""
    return (0.5 * (mean.square() + log_var.exp() - log_var - 1).sum(1)).mean()


def kl_per_latent(mean: Tensor, log_var: Tensor) -> Tensor:
    """The KL of each latent, averaged over the batch (L,): which latents are active."""
    return (0.5 * (mean.square() + log_var.exp() - log_var - 1)).mean(0)


def sample_latent(mean: Tensor, log_var: Tensor, eps: Tensor) -> Tensor:
    """The reparameterised sample z = mean + exp(log_var / 2) eps."""
    return mean + (0.5 * log_var).exp() * eps


def gaussian_log_density(samples: Tensor, mean: Tensor, log_var: Tensor) -> Tensor:
    """log N(samples; mean, exp(log_var)), elementwise (broadcasting)."""
    return -0.5 * ((samples - mean).square() * (-log_var).exp() + log_var + math.log(2 * math.pi))


def total_correlation(z: Tensor, mean: Tensor, log_var: Tensor) -> Tensor:
    """beta-TCVAE's minibatch-weighted estimate of TC(q(z)) (Chen et al. 2018):
    mean_j [log q(z_j) - sum_l log q(z_jl)], with log q(z_j) = logsumexp_i log q(z_j|x_i)
    and log q(z_jl) = logsumexp_i log q(z_jl|x_i); the constants log(N M) are dropped,
    as in disentanglement_lib."""
    log_qz_prob = gaussian_log_density(z[:, None, :], mean[None, :, :], log_var[None, :, :])  # (j, i, l)
    log_qz_product = torch.logsumexp(log_qz_prob, dim=1).sum(1)
    log_qz = torch.logsumexp(log_qz_prob.sum(2), dim=1)
    return (log_qz - log_qz_product).mean()


def covariance(x: Tensor) -> Tensor:
    """The biased covariance E[x x^T] - E[x] E[x]^T over the batch (compute_covariance_z_mean)."""
    m = x.mean(0)
    return (x[:, :, None] * x[:, None, :]).mean(0) - m[:, None] * m[None, :]


def dip_regularizer(cov: Tensor, lambda_od: float, lambda_d: float) -> Tensor:
    """lambda_od sum_{i != j} cov_ij^2 + lambda_d sum_i (cov_ii - 1)^2
    (regularize_diag_off_diag_dip)."""
    diag = torch.diagonal(cov)
    off = cov - torch.diag(diag)
    return lambda_od * off.square().sum() + lambda_d * (diag - 1).square().sum()


def permute_dims(z: Tensor, perm: Tensor) -> Tensor:
    """Each latent's column shuffled across the batch by its own permutation
    (perm[:, l] is a permutation of the batch; shuffle_codes)."""
    return torch.gather(z, 0, perm)
