"""EDM (Karras et al., 2022), one small function per equation.

Preconditioning runs in fp32 whatever precision the network uses: `precondition`
upcasts its inputs, and `denoise` upcasts the network's raw output before mixing.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

SIGMA_DATA = 0.5
P_MEAN = -1.2
P_STD = 1.2


def c_skip(sigma: Tensor, sigma_data: float = SIGMA_DATA) -> Tensor:
    return sigma_data**2 / (sigma**2 + sigma_data**2)


def c_out(sigma: Tensor, sigma_data: float = SIGMA_DATA) -> Tensor:
    return sigma * sigma_data / (sigma**2 + sigma_data**2).sqrt()


def c_in(sigma: Tensor, sigma_data: float = SIGMA_DATA) -> Tensor:
    return 1.0 / (sigma**2 + sigma_data**2).sqrt()


def c_noise(sigma: Tensor) -> Tensor:
    return sigma.log() / 4.0


def loss_weight(sigma: Tensor, sigma_data: float = SIGMA_DATA) -> Tensor:
    """lambda(sigma) = 1/sigma^2 + 1/sigma_data^2 = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2."""
    return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2


def sample_training_sigmas(
    n: int,
    p_mean: float = P_MEAN,
    p_std: float = P_STD,
    *,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """ln(sigma) ~ N(P_mean, P_std^2)."""
    z = torch.randn(n, device=device, generator=generator, dtype=torch.float32)
    return (z * p_std + p_mean).exp()


def denoise(
    network: Callable[..., Tensor],
    x: Tensor,
    sigma: Tensor,
    sigma_data: float = SIGMA_DATA,
    **cond,
) -> Tensor:
    """D(x; sigma) = c_skip x + c_out F(c_in x, c_noise, cond), mixed in fp32."""
    x = x.float()
    sigma = sigma.float().reshape(-1, 1, 1, 1).expand(x.shape[0], 1, 1, 1)
    f = network(c_in(sigma, sigma_data) * x, c_noise(sigma).flatten(), **cond)
    return c_skip(sigma, sigma_data) * x + c_out(sigma, sigma_data) * f.float()


def karras_sigmas(
    n: int,
    sigma_min: float = 0.002,
    sigma_max: float = 80.0,
    rho: float = 7.0,
    device: torch.device | str | None = None,
) -> Tensor:
    """n noise levels from sigma_max down to sigma_min (EDM Eq. 5), then a final 0."""
    if n < 1:
        raise ValueError("karras_sigmas needs n >= 1")
    i = torch.arange(n, dtype=torch.float64)
    if n == 1:
        steps = torch.tensor([sigma_max], dtype=torch.float64)
    else:
        inv_max, inv_min = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
        steps = (inv_max + i / (n - 1) * (inv_min - inv_max)) ** rho
    return torch.cat([steps, steps.new_zeros(1)]).to(device=device, dtype=torch.float32)


@torch.no_grad()
def heun_sample(
    denoise_fn: Callable[[Tensor, Tensor], Tensor],
    x: Tensor,
    sigmas: Tensor,
    churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float = math.inf,
    s_noise: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """EDM Algorithm 2: Heun steps along sigmas (ending at 0); the last step is Euler.

    `x` is the starting sample at sigmas[0] (noise times sigma_max for generation);
    `denoise_fn(x, sigma)` returns D(x; sigma) for a batch with one sigma per sample.
    """
    n = len(sigmas) - 1
    if x.dtype != torch.float64:
        x = x.float()
    ones = x.new_ones(x.shape[0])
    for i in range(n):
        s_cur, s_next = float(sigmas[i]), float(sigmas[i + 1])
        gamma = min(churn / n, math.sqrt(2.0) - 1.0) if s_tmin <= s_cur <= s_tmax else 0.0
        s_hat = s_cur + gamma * s_cur
        if gamma > 0:
            eps = torch.randn(x.shape, device=x.device, generator=generator, dtype=x.dtype)
            x = x + (s_hat**2 - s_cur**2) ** 0.5 * s_noise * eps
        d_cur = (x - denoise_fn(x, s_hat * ones)) / s_hat
        x_next = x + (s_next - s_hat) * d_cur
        if s_next > 0:
            d_prime = (x_next - denoise_fn(x_next, s_next * ones)) / s_next
            x_next = x + (s_next - s_hat) * (0.5 * d_cur + 0.5 * d_prime)
        x = x_next
    return x
