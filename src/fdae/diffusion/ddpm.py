"""DDPM (Ho et al., 2020) as DisDiff's reference code uses it, one small function per
equation, beside `fdae.diffusion.edm`.

Discrete time t = 0 .. T-1 (T = 1000), LDM's "linear" schedule
beta_t = (sqrt(beta_start) + t / (T - 1) (sqrt(beta_end) - sqrt(beta_start)))^2,
alpha_t = 1 - beta_t, abar_t = prod_{s <= t} alpha_s; the network predicts the noise
eps of x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps. Schedules are float64 tensors;
`at(coef, t, x)` gathers a coefficient per sample, shaped to broadcast against x.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

T = 1000
BETA_START = 0.0015  # DisDiff's configs (LDM linear_start)
BETA_END = 0.0155  # LDM linear_end


def linear_betas(steps: int = T, start: float = BETA_START, end: float = BETA_END) -> Tensor:
    """LDM's "linear" schedule: linear in sqrt(beta)."""
    return torch.linspace(start**0.5, end**0.5, steps, dtype=torch.float64) ** 2


def alphas_cumprod(betas: Tensor) -> Tensor:
    """abar_t = prod_{s <= t} (1 - beta_s)."""
    return torch.cumprod(1.0 - betas, dim=0)


def at(coef: Tensor, t: Tensor, x: Tensor) -> Tensor:
    """coef[t] per sample, as x's dtype and device, shaped (B, 1, 1, ...)."""
    return coef.to(x.device)[t].to(x.dtype).reshape(-1, *([1] * (x.dim() - 1)))


def q_sample(x0: Tensor, t: Tensor, noise: Tensor, abar: Tensor) -> Tensor:
    """x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps (forward process, closed form)."""
    return at(abar.sqrt(), t, x0) * x0 + at((1 - abar).sqrt(), t, x0) * noise


def predict_x0(x_t: Tensor, t: Tensor, eps: Tensor, abar: Tensor) -> Tensor:
    """x_0 = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)."""
    return (x_t - at((1 - abar).sqrt(), t, x_t) * eps) / at(abar.sqrt(), t, x_t)


def abar_prev(abar: Tensor) -> Tensor:
    """abar_{t-1}, with abar_{-1} = 1."""
    return torch.cat([abar.new_ones(1), abar[:-1]])


def shift_coefficient(betas: Tensor) -> Tensor:
    """k_t = -sqrt(alpha_t) (1 - abar_{t-1}) / sqrt(1 - abar_t): PDAE's coefficient with
    which DisDiff adds its gradient fields to the predicted noise, eps_hat = eps_theta +
    k_t sum_c G_c (PDAE eq. 10's mean shift written as a noise shift)."""
    abar = alphas_cumprod(betas)
    return -(1.0 - betas).sqrt() * (1.0 - abar_prev(abar)) / (1.0 - abar).sqrt()


def disentangle_coefficient(betas: Tensor) -> Tensor:
    """d_t = -sqrt(1 - abar_t): DisDiff's disentangling loss shifts eps_theta by one
    unit's field, eps_c = eps_theta + d_t G_c."""
    return -(1.0 - alphas_cumprod(betas)).sqrt()


def ddim_sample(eps_model: Callable[[Tensor, Tensor], Tensor], x_T: Tensor, abar: Tensor, steps: int) -> Tensor:
    """Deterministic DDIM (eta = 0) from x_T over `steps` evenly spaced timesteps:
    x_{t'} = sqrt(abar_t') x0_hat + sqrt(1 - abar_t') eps_hat."""
    n = abar.shape[0]
    ts = torch.linspace(n - 1, 0, steps, dtype=torch.float64).round().long().unique_consecutive()
    x = x_T
    for i, t in enumerate(ts.tolist()):
        tt = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
        eps = eps_model(x, tt)
        x0 = predict_x0(x, tt, eps, abar).clamp(-1, 1)
        if i + 1 < len(ts):
            a_next = float(abar[int(ts[i + 1])])
            a_t = float(abar[t])
            eps = (x - a_t**0.5 * x0) / (1 - a_t) ** 0.5  # the noise consistent with the clamped x0
            x = a_next**0.5 * x0 + (1 - a_next) ** 0.5 * eps
        else:
            x = x0
    return x
