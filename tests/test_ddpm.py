"""DDPM (DisDiff's formulation): each coefficient against its formula, computed by hand."""

import math

import pytest
import torch

from fdae.diffusion import ddpm


def test_linear_schedule_is_linear_in_sqrt_beta():
    b = ddpm.linear_betas()
    assert b.shape == (1000,) and b.dtype == torch.float64
    assert b[0].item() == pytest.approx(0.0015) and b[-1].item() == pytest.approx(0.0155)
    step = (math.sqrt(0.0155) - math.sqrt(0.0015)) / 999
    assert b[500].item() == pytest.approx((math.sqrt(0.0015) + 500 * step) ** 2)
    abar = ddpm.alphas_cumprod(b)
    assert abar[2].item() == pytest.approx((1 - b[0].item()) * (1 - b[1].item()) * (1 - b[2].item()))


@pytest.mark.parametrize("t", [0, 1, 10, 250, 999])
def test_shift_coefficients_equal_their_formulas(t):
    b = ddpm.linear_betas()
    abar = [1.0]
    for beta in b.tolist():
        abar.append(abar[-1] * (1 - beta))
    a_t, a_prev, alpha = abar[t + 1], abar[t], 1 - b[t].item()  # abar[0] here is abar_{-1} = 1
    k = -math.sqrt(alpha) * (1 - a_prev) / math.sqrt(1 - a_t)
    d = -math.sqrt(1 - a_t)
    assert ddpm.shift_coefficient(b)[t].item() == pytest.approx(k, rel=1e-12, abs=1e-15)
    assert ddpm.disentangle_coefficient(b)[t].item() == pytest.approx(d, rel=1e-12)
    if t == 0:
        assert ddpm.shift_coefficient(b)[0].item() == 0.0  # nothing to shift at the last step


def test_q_sample_and_predict_x0_invert_each_other():
    g = torch.Generator().manual_seed(0)
    abar = ddpm.alphas_cumprod(ddpm.linear_betas())
    x0, eps = torch.randn(4, 3, 8, 8, generator=g), torch.randn(4, 3, 8, 8, generator=g)
    t = torch.tensor([0, 10, 500, 999])
    xt = ddpm.q_sample(x0, t, eps, abar)
    a = abar[500].item()
    assert torch.allclose(xt[2], math.sqrt(a) * x0[2] + math.sqrt(1 - a) * eps[2], atol=1e-6)
    assert torch.allclose(ddpm.predict_x0(xt, t, eps, abar), x0, atol=1e-4)


def test_ddim_with_the_exact_noise_predictor_lands_on_the_data():
    """Data = one image x*: the exact eps predictor is (x - sqrt(abar) x*) / sqrt(1 - abar),
    and deterministic DDIM from any x_T must end at x*."""
    abar = ddpm.alphas_cumprod(ddpm.linear_betas())
    target = torch.rand(2, 3, 4, 4) * 1.6 - 0.8

    def eps_model(x, t):
        a = ddpm.at(abar, t, x)
        return (x - a.sqrt() * target) / (1 - a).sqrt()

    out = ddpm.ddim_sample(eps_model, torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(1)), abar, 20)
    assert torch.allclose(out, target, atol=1e-5)
