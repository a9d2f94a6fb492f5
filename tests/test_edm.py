"""EDM equations against hand-computed values and a closed-form denoiser."""

import math

import pytest
import torch

from fdae.diffusion import edm


def test_preconditioning_hand_values():
    s = torch.tensor([0.5, 2.0])
    # sigma = 0.5 = sigma_data: c_skip 1/2, c_out 0.25/sqrt(0.5), c_in 1/sqrt(0.5)
    assert edm.c_skip(s)[0].item() == pytest.approx(0.5)
    assert edm.c_out(s)[0].item() == pytest.approx(0.25 / math.sqrt(0.5))
    assert edm.c_in(s)[0].item() == pytest.approx(1 / math.sqrt(0.5))
    # sigma = 2: c_skip 0.25/4.25, c_out 1/sqrt(4.25), c_in 1/sqrt(4.25)
    assert edm.c_skip(s)[1].item() == pytest.approx(0.25 / 4.25)
    assert edm.c_out(s)[1].item() == pytest.approx(1.0 / math.sqrt(4.25))
    assert edm.c_noise(s)[1].item() == pytest.approx(math.log(2.0) / 4)
    # lambda = 1/sigma^2 + 1/sigma_data^2
    assert edm.loss_weight(s)[0].item() == pytest.approx(4 + 4)
    assert edm.loss_weight(s)[1].item() == pytest.approx(0.25 + 4)
    # the effective weight lambda * c_out^2 is 1 at every sigma (EDM's design goal)
    grid = torch.logspace(-2, 1.5, 20)
    assert torch.allclose(edm.loss_weight(grid) * edm.c_out(grid) ** 2, torch.ones(20), atol=1e-5)


def test_training_sigma_distribution():
    g = torch.Generator().manual_seed(0)
    s = edm.sample_training_sigmas(200_000, generator=g)
    assert s.log().mean().item() == pytest.approx(-1.2, abs=0.01)
    assert s.log().std().item() == pytest.approx(1.2, abs=0.01)


def test_karras_sigmas():
    s = edm.karras_sigmas(5)
    assert s.shape == (6,)
    assert s[0].item() == pytest.approx(80.0)
    assert s[-2].item() == pytest.approx(0.002, rel=1e-5)
    assert s[-1].item() == 0.0
    assert torch.all(s[1:] < s[:-1])
    # middle value from Eq. 5 by hand: (80^(1/7) + 0.5 (0.002^(1/7) - 80^(1/7)))^7
    mid = (80 ** (1 / 7) + 0.5 * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7
    assert s[2].item() == pytest.approx(mid, rel=1e-5)


def gaussian_denoiser(std):
    """Ideal D for data N(0, std^2): E[y | x] = std^2 / (std^2 + sigma^2) x."""
    def d(x, sigma):
        sigma = sigma.reshape(-1, *([1] * (x.ndim - 1)))
        return std**2 / (std**2 + sigma**2) * x
    return d


def test_heun_hits_the_ode_endpoint_for_gaussian_data():
    std = 0.7
    x0 = torch.randn(1000, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    errors = []
    for n in (80, 160):
        sigmas = edm.karras_sigmas(n).double()
        x = x0 * sigmas[0]
        out = edm.heun_sample(gaussian_denoiser(std), x, sigmas)
        # probability-flow ODE: x(sigma) = x(sigma_max) sqrt(std^2 + sigma^2) / sqrt(std^2 + sigma_max^2)
        exact = x * std / math.sqrt(std**2 + 80.0**2)
        errors.append(((out - exact).norm() / exact.norm()).item())
    assert errors[1] < 1e-3
    # Heun is second order: halving the step size quarters the error
    assert 3.5 < errors[0] / errors[1] < 4.5
    # and the samples have the data's standard deviation
    assert out.std().item() == pytest.approx(std, rel=0.03)


def test_heun_with_churn_keeps_the_distribution():
    std = 0.5
    g = torch.Generator().manual_seed(3)
    sigmas = edm.karras_sigmas(40)
    x = torch.randn(20_000, generator=g) * sigmas[0]
    out = edm.heun_sample(gaussian_denoiser(std), x, sigmas, churn=10.0, generator=g)
    assert out.std().item() == pytest.approx(std, rel=0.03)
    assert abs(out.mean().item()) < 0.02


def test_denoise_is_fp32_even_for_a_bf16_network():
    x = torch.randn(2, 3, 8, 8)
    sigma = torch.tensor([0.3, 3.0])

    def net(x_in, c_noise):
        return (x_in * 2).to(torch.bfloat16)

    out = edm.denoise(net, x, sigma)
    assert out.dtype == torch.float32
    s = sigma.reshape(-1, 1, 1, 1)
    expected = edm.c_skip(s) * x + edm.c_out(s) * (edm.c_in(s) * x * 2).to(torch.bfloat16).float()
    assert torch.allclose(out, expected)
