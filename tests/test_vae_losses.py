"""disentanglement_lib's VAE objectives: each loss against its formula computed here
independently (loops, torch.distributions, numpy) on fixed tensors, and the networks'
layer shapes against the reference's."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.distributions import Normal, kl_divergence

from fdae.config import load_config
from fdae.methods import build_method
from fdae.methods.vae.annealed_vae import capacity
from fdae.methods.vae.factor_vae import discriminator_loss, tc_estimate
from fdae.methods.vae.losses import (bernoulli_reconstruction, covariance, dip_regularizer, gaussian_kl,
                                     permute_dims, sample_latent, total_correlation)

VAES = ["beta-vae", "annealed-vae", "beta-tcvae", "factor-vae", "dip-vae-i", "dip-vae-ii"]


def _fixed(b=6, l=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    mean = torch.randn(b, l, generator=g, dtype=torch.float64)
    log_var = torch.randn(b, l, generator=g, dtype=torch.float64) * 0.5
    eps = torch.randn(b, l, generator=g, dtype=torch.float64)
    return mean, log_var, eps


def test_kl_and_bernoulli_reconstruction():
    mean, log_var, _ = _fixed()
    want = kl_divergence(Normal(mean, (0.5 * log_var).exp()), Normal(0.0, 1.0)).sum(1).mean()
    assert float(gaussian_kl(mean, log_var)) == pytest.approx(float(want), rel=1e-12)
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 1, 4, 4, generator=g, dtype=torch.float64) * 3
    x = torch.rand(3, 1, 4, 4, generator=g, dtype=torch.float64)
    total = 0.0
    for b in range(3):
        for v, t in zip(logits[b].flatten().tolist(), x[b].flatten().tolist()):
            p = 1 / (1 + math.exp(-v))
            total -= t * math.log(p) + (1 - t) * math.log(1 - p)
    assert float(bernoulli_reconstruction(logits, x)) == pytest.approx(total / 3, rel=1e-6)  # in fp32


def test_total_correlation_is_the_minibatch_weighted_estimate():
    mean, log_var, eps = _fixed(b=5, l=3)
    z = sample_latent(mean, log_var, eps)
    std = (0.5 * log_var).exp()
    tc = 0.0
    for j in range(5):  # log q(z_j) - sum_l log q(z_jl), each q a sum over the batch (constants dropped)
        joint = [Normal(mean[i], std[i]).log_prob(z[j]).sum().item() for i in range(5)]
        log_qz = math.log(sum(math.exp(v) for v in joint))
        product = 0.0
        for l in range(3):
            marg = [Normal(mean[i, l], std[i, l]).log_prob(z[j, l]).item() for i in range(5)]
            product += math.log(sum(math.exp(v) for v in marg))
        tc += log_qz - product
    assert float(total_correlation(z, mean, log_var)) == pytest.approx(tc / 5, rel=1e-9)


def test_dip_covariances_and_regularizer():
    mean, log_var, _ = _fixed(b=8, l=3)
    cov_i = np.cov(mean.numpy().T, bias=True)
    assert np.allclose(covariance(mean).numpy(), cov_i, atol=1e-12)

    def reg(c, lod, ld):
        return sum(lod * c[i, j] ** 2 for i in range(3) for j in range(3) if i != j) + \
            sum(ld * (c[i, i] - 1) ** 2 for i in range(3))

    cfg_i = load_config(None, ["method.name=dip-vae-i", "method.lambda_od=2"])
    cfg_ii = load_config(None, ["method.name=dip-vae-ii", "method.lambda_od=2"])
    m_i, m_ii = build_method(cfg_i, 1, 64).double(), build_method(cfg_ii, 1, 64).double()
    kl = torch.tensor(0.0, dtype=torch.float64)
    got_i, _ = m_i.regularizer(mean, log_var, None, kl, {}, torch.tensor(0.0))
    assert float(got_i) == pytest.approx(reg(cov_i, 2, 20), rel=1e-10)  # type I: lambda_d = 10 lambda_od
    cov_ii = cov_i + np.diag(np.exp(log_var.numpy()).mean(0))
    got_ii, _ = m_ii.regularizer(mean, log_var, None, kl, {}, torch.tensor(0.0))
    assert float(got_ii) == pytest.approx(reg(cov_ii, 2, 2), rel=1e-10)  # type II: lambda_d = lambda_od
    assert float(dip_regularizer(torch.eye(3, dtype=torch.float64), 5, 7)) == 0.0


def test_annealed_capacity_at_given_steps():
    for step, want in [(0, 0.0), (250, 12.5), (500, 25.0), (1500, 25.0)]:
        assert float(capacity(torch.tensor(float(step)), 25.0, 500)) == pytest.approx(want)
    cfg = load_config(None, ["method.name=annealed-vae", "method.c_max=10", "method.gamma=3",
                             "method.iteration_threshold=100"])
    model = build_method(cfg, 1, 64)
    kl = torch.tensor(4.0)
    reg, terms = model.regularizer(None, None, None, kl, {}, torch.tensor(30.0))  # C = 3
    assert float(reg) == pytest.approx(3 * abs(4.0 - 3.0)) and float(terms["capacity"]) == pytest.approx(3.0)


def test_factor_vae_permutation_and_both_objectives():
    cfg = load_config(None, ["method.name=factor-vae", "method.gamma=7"])
    model = build_method(cfg, 1, 64)
    images = torch.rand(16, 1, 64, 64) * 2 - 1
    draws = model.draw(images, torch.Generator().manual_seed(3))
    again = model.draw(images, torch.Generator().manual_seed(3))
    assert torch.equal(draws["perm"], again["perm"]) and torch.equal(draws["eps"], again["eps"])
    z = torch.randn(16, 10)
    zp = permute_dims(z, draws["perm"])
    for l in range(10):  # each latent's column is a permutation of itself, its own one
        assert torch.equal(zp[:, l].sort().values, z[:, l].sort().values)
        assert torch.equal(zp[:, l], z[draws["perm"][:, l], l])
    assert len({tuple(draws["perm"][:, l].tolist()) for l in range(10)}) > 1
    logits_real, logits_perm = torch.randn(16, 2), torch.randn(16, 2)
    p_real, p_perm = logits_real.softmax(1).clamp(1e-6, 1 - 1e-6), logits_perm.softmax(1).clamp(1e-6, 1 - 1e-6)
    want = -(0.5 * np.log(p_real[:, 0].numpy()).mean() + 0.5 * np.log(p_perm[:, 1].numpy()).mean())
    assert float(discriminator_loss(logits_real, logits_perm)) == pytest.approx(float(want), rel=1e-6)
    assert float(tc_estimate(logits_real)) == pytest.approx(float((logits_real[:, 0] - logits_real[:, 1]).mean()))


def test_factor_vae_one_backward_gives_each_part_only_its_own_gradient():
    torch.manual_seed(0)
    model = build_method(load_config(None, ["method.name=factor-vae"]), 1, 64)
    images = torch.rand(8, 1, 64, 64) * 2 - 1
    draws = model.draw(images, torch.Generator().manual_seed(0))
    step = torch.tensor(0.0)
    terms = model.loss_given_draws(images, draws, step)
    terms["loss"].backward()
    both = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    # The VAE objective alone, with D's weights as constants, and D's objective alone.
    x = (images + 1) / 2
    mean, log_var = model.encoder(x)
    z = sample_latent(mean, log_var, draws["eps"])
    recon = bernoulli_reconstruction(model.decoder(z), x)
    for p in model.discriminator.parameters():
        p.requires_grad_(False)
    tc = tc_estimate(model.discriminator(z))
    (recon + gaussian_kl(mean, log_var) + model.cfg.gamma * tc).backward()
    for p in model.discriminator.parameters():
        p.requires_grad_(True)
    d_loss = discriminator_loss(model.discriminator(z.detach()),
                                model.discriminator(permute_dims(z.detach(), draws["perm"])))
    d_loss.backward()
    for n, p in model.named_parameters():
        assert torch.allclose(both[n], p.grad, rtol=1e-4, atol=1e-6), n
    want = (recon + gaussian_kl(mean, log_var) + model.cfg.gamma * tc).detach()
    assert float(terms["vae_loss"]) == pytest.approx(float(want), rel=1e-5)


@pytest.mark.parametrize("name", ["beta-vae", "beta-tcvae"])
def test_total_loss_is_reconstruction_plus_regularizer(name):
    torch.manual_seed(0)
    model = build_method(load_config(None, [f"method.name={name}", "method.beta=3"]), 3, 64)
    images = torch.rand(6, 3, 64, 64) * 2 - 1
    draws = model.draw(images, torch.Generator().manual_seed(1))
    terms = model.loss_given_draws(images, draws, torch.tensor(0.0))
    x = (images + 1) / 2
    mean, log_var = model.encoder(x)
    z = mean + (0.5 * log_var).exp() * draws["eps"]
    recon = bernoulli_reconstruction(model.decoder(z), x)
    kl = gaussian_kl(mean, log_var)
    reg = 3 * kl if name == "beta-vae" else kl + 2 * total_correlation(z, mean, log_var)
    assert float(terms["loss"].detach()) == pytest.approx(float((recon + reg).detach()), rel=1e-5)
    assert float(terms["elbo"]) == pytest.approx(float(-(recon + kl).detach()), rel=1e-5)


def test_layer_shapes_and_sizes_are_the_references():
    model = build_method(load_config(None, ["method.name=beta-vae"]), 3, 64)
    x = torch.zeros(2, 3, 64, 64)
    shapes, h = [], x
    for layer in model.encoder.convs:
        h = layer(h)
        if isinstance(layer, torch.nn.Conv2d):
            shapes.append(tuple(h.shape[1:]))
    assert shapes == [(32, 32, 32), (32, 16, 16), (64, 8, 8), (64, 4, 4)]
    kernels = [(m.kernel_size, m.stride, m.padding) for m in model.encoder.convs if isinstance(m, torch.nn.Conv2d)]
    assert kernels == [((4, 4), (2, 2), (1, 1))] * 2 + [((2, 2), (2, 2), (0, 0))] * 2
    mean, log_var = model.encoder(x)
    assert mean.shape == log_var.shape == (2, 10)
    assert [m.out_features for m in model.encoder.modules() if isinstance(m, torch.nn.Linear)] == [256, 10, 10]
    z, shapes = torch.zeros(2, 10), []
    h = model.decoder.dense(z)
    assert h.shape == (2, 1024)
    h = h.reshape(-1, 64, 4, 4)
    for layer in model.decoder.deconvs:
        h = layer(h)
        if isinstance(layer, torch.nn.ConvTranspose2d):
            shapes.append(tuple(h.shape[1:]))
    assert shapes == [(64, 8, 8), (32, 16, 16), (32, 32, 32), (3, 64, 64)]
    # Parameter counts as the TF layers have them (kernel + bias), written out by hand.
    enc = (4 * 4 * 3 * 32 + 32) + (4 * 4 * 32 * 32 + 32) + (2 * 2 * 32 * 64 + 64) + (2 * 2 * 64 * 64 + 64) + \
        (1024 * 256 + 256) + 2 * (256 * 10 + 10)
    dec = (10 * 256 + 256) + (256 * 1024 + 1024) + (4 * 4 * 64 * 64 + 64) + (4 * 4 * 64 * 32 + 32) + \
        (4 * 4 * 32 * 32 + 32) + (4 * 4 * 32 * 3 + 3)
    assert sum(p.numel() for p in model.encoder.parameters()) == enc
    assert sum(p.numel() for p in model.decoder.parameters()) == dec
    fv = build_method(load_config(None, ["method.name=factor-vae"]), 3, 64)
    disc = (10 * 1000 + 1000) + 5 * (1000 * 1000 + 1000) + (1000 * 2 + 2)
    assert sum(p.numel() for p in fv.discriminator.parameters()) == disc
    slopes = {m.negative_slope for m in fv.discriminator.modules() if isinstance(m, torch.nn.LeakyReLU)}
    assert slopes == {0.2}


@pytest.mark.parametrize("name", VAES)
def test_every_vae_gives_means_as_codes_and_images_in_range(name):
    model = build_method(load_config(None, [f"method.name={name}"]), 1, 64)
    images = torch.rand(4, 1, 64, 64) * 2 - 1
    codes = model.encode(images)
    assert torch.equal(codes, model.encoder((images + 1) / 2)[0].detach())
    assert model.groups == [(f"z{i}", 1) for i in range(1, 11)]
    out = model.reconstruct(images)
    assert out.shape == images.shape and out.min() >= -1 and out.max() <= 1
    terms = model.loss(images, torch.Generator().manual_seed(0))
    assert torch.isfinite(terms["loss"])
