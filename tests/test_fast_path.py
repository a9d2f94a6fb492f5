"""The optimised training step computes what the plain one computes (issue 6).

Plain: fp32, eager, `model.loss(images, generator)` then backward. Optimised:
`fdae.train.fast_step` (draws split from the loss, channels-last, bf16 autocast,
optionally torch.compile). Same seed, same batch: fp32 must match to float rounding,
bf16 within bf16 tolerance.
"""

import copy
import os

import pytest
import torch

from fdae.config import load_config
from fdae.diffusion.unet import UNet, make_spec, upsample_nearest2x
from fdae.methods import build_method
from fdae.nn.norm import GroupNorm32
from fdae.train.fast_step import make_loss_fn, make_train_step


def _model(**extra):
    cfg = load_config(None, ["unet.preset=tiny", "method.num_concepts=3", "method.encoder_width=8",
                             "method.mask_decoder_width=48", *[f"{k}={v}" for k, v in extra.items()]])
    torch.manual_seed(0)
    return build_method(cfg, image_size=32)


def _images(b=4, size=32):
    return torch.rand(b, 3, size, size, generator=torch.Generator().manual_seed(3)) * 2 - 1


def _plain_grads(model, images, seed=7):
    model.zero_grad(set_to_none=True)
    terms = model.loss(images, torch.Generator().manual_seed(seed))
    terms["loss"].backward()
    return terms, {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def _fast_grads(model, images, seed=7, **flags):
    """One optimised step with a zero learning rate: the gradients stay on the parameters."""
    grads = {}
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    # zero_grad runs inside the step: read the gradients just before the optimizer step
    opt.register_step_pre_hook(lambda *_: grads.update(
        {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}))
    step = make_train_step(model, opt, **flags)
    loss = step(images, torch.Generator().manual_seed(seed))
    return loss, grads


def _rel(a, b):
    return float((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-30))


def test_loss_given_noise_is_loss():
    model = _model()
    images = _images()
    a = model.loss(images, torch.Generator().manual_seed(1))
    sigma, noise = model.draw_noise(images, torch.Generator().manual_seed(1))
    b = model.loss_given_noise(images, sigma, noise)
    assert set(a) == set(b)
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_groupnorm32_is_groupnorm_in_fp32_and_keeps_dtype():
    gn, ref = GroupNorm32(4, 16), torch.nn.GroupNorm(4, 16)
    ref.load_state_dict(gn.state_dict())
    x = torch.randn(2, 16, 5, 5)
    assert torch.equal(gn(x), ref(x))
    assert gn(x.bfloat16()).dtype == torch.bfloat16
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert gn(x.bfloat16()).dtype == torch.bfloat16
    # Same parameters as nn.GroupNorm (so checkpoints and the paper preset's count,
    # 281,535,299 in test_unet, are unchanged), and every norm of the U-Net is one.
    assert [(n, p.shape) for n, p in gn.named_parameters()] == [(n, p.shape) for n, p in ref.named_parameters()]
    norms = [m for m in UNet(make_spec("tiny")).modules() if isinstance(m, torch.nn.GroupNorm)]
    assert len(norms) == 35 and all(type(m) is GroupNorm32 for m in norms)


@pytest.mark.parametrize("channels_last", [False, True])
def test_fast_step_fp32_matches_plain(channels_last):
    model = _model()
    images = _images()
    fast_model = copy.deepcopy(model)
    terms, ref = _plain_grads(model, images)
    loss, grads = _fast_grads(fast_model, images, precision="fp32", channels_last=channels_last)
    assert set(grads) == set(ref)
    if channels_last:  # the same sums in another memory order: float rounding only
        assert torch.allclose(loss, terms["loss"], rtol=1e-6, atol=0)
        scale = torch.cat([r.flatten() for r in ref.values()]).norm()
        for n in ref:  # relative 1e-4 per tensor; gradients that are 0 up to rounding (1e-14) by scale
            err = (grads[n] - ref[n]).norm()
            assert err <= 1e-4 * ref[n].norm() + 1e-8 * scale, n
    else:
        assert torch.equal(loss, terms["loss"].detach())
        for n in ref:
            assert torch.equal(grads[n], ref[n]), n


def test_fast_step_bf16_close_to_fp32():
    model = _model()
    images = _images()
    fast_model = copy.deepcopy(model)
    terms, ref = _plain_grads(model, images)
    loss, grads = _fast_grads(fast_model, images, precision="bf16", channels_last=True)
    assert torch.isfinite(loss)
    assert abs(float(loss) - float(terms["loss"].detach())) / float(terms["loss"]) < 2e-2
    total_ref = torch.cat([ref[n].flatten() for n in ref])
    total = torch.cat([grads[n].flatten() for n in ref])
    assert _rel(total, total_ref) < 5e-2
    for n in ref:  # every tensor with a gradient of any size is close too
        if ref[n].norm() > 1e-3 * total_ref.norm():
            assert _rel(grads[n], ref[n]) < 0.1, n


def test_bf16_loss_stays_fp32():
    model = _model()
    images = _images()
    draws = model.draw(images, torch.Generator().manual_seed(2))
    terms = make_loss_fn(model, "bf16")(images, draws, torch.zeros(()))
    assert terms["loss"].dtype == torch.float32
    assert terms["diffusion"].dtype == torch.float32


@pytest.mark.skipif(not os.environ.get("FDAE_TEST_COMPILE"), reason="set FDAE_TEST_COMPILE=1 (slow on CPU)")
def test_compiled_loss_matches_eager_fp32():
    model = _model()
    images = _images()
    sigma, noise = model.draw_noise(images, torch.Generator().manual_seed(5))
    eager = copy.deepcopy(model)
    ref = eager.loss_given_noise(images, sigma, noise)
    ref["loss"].backward()
    out = make_loss_fn(model, "fp32", compile=True)(images, {"sigma": sigma, "noise": noise}, torch.zeros(()))
    out["loss"].backward()
    assert torch.allclose(out["loss"], ref["loss"], rtol=1e-5)
    scale = torch.cat([q.grad.flatten() for q in eager.parameters() if q.grad is not None]).norm()
    for (n, p), (_, q) in zip(model.named_parameters(), eager.named_parameters()):
        if q.grad is not None:  # gradients that are 0 up to rounding (1e-15) are compared by scale
            assert (p.grad - q.grad).norm() <= 1e-4 * q.grad.norm() + 1e-8 * scale, n


def test_upsample_nearest2x_is_interpolate():
    x = torch.randn(2, 5, 4, 3, requires_grad=True)
    y = torch.nn.functional.interpolate(x, scale_factor=2.0, mode="nearest")
    z = upsample_nearest2x(x)
    assert torch.equal(y, z)
    g = torch.randn_like(y)
    (gy,) = torch.autograd.grad(y, x, g)
    (gz,) = torch.autograd.grad(z, x, g)
    assert torch.allclose(gy, gz, rtol=1e-6, atol=1e-6)
