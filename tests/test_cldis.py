"""CL-Dis (docs/cldis.md): each loss term equals its formula, gradients flow where the
design note says and nowhere else, the feedback measures what it claims, the config is
checked, and a run stopped and resumed equals an uninterrupted one."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.distributions import Normal, kl_divergence

from fdae.config import load_config
from fdae.errors import FdaeError
from fdae.methods import build_method
from fdae.methods.cldis import CLDisConfig, distillation_kl, feedback_share, vae_constraint

TINY = ["data.image_size=16", "method.encoder_width=8", "method.distill_dims=3", "method.free_dims=2",
        "method.feedback_every=2", "method.feedback_batch=4", "unet.channels=16", "unet.channel_mult=[1,1]",
        "train.batch_size=4", "train.device=cpu", "train.log_every=1", "train.image_every=0", "train.eval_every=0"]


def tiny_method(extra=()):
    cfg = load_config("cldis-shapes3d-synth", [*TINY, *extra])
    torch.manual_seed(0)
    return build_method(cfg, 3, 16), cfg


def test_distillation_kl_is_kl_of_teacher_to_student():
    g = torch.Generator().manual_seed(0)
    mt, ms = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    lt, ls = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    want = kl_divergence(Normal(mt, (0.5 * lt).exp()), Normal(ms, (0.5 * ls).exp())).sum(1).mean()
    assert torch.allclose(distillation_kl(mt, lt, ms, ls), want, atol=1e-6)
    assert float(distillation_kl(mt, lt, mt, lt)) == pytest.approx(0.0, abs=1e-7)
    # one unit by hand: teacher N(1, 1), student N(0, e^2): log e - 0 + (1 + 1) / e^2 / 2 - 1/2
    one = distillation_kl(torch.ones(1, 1), torch.zeros(1, 1), torch.zeros(1, 1), torch.full((1, 1), 2.0))
    assert float(one) == pytest.approx(0.5 * (2.0 + 2.0 / np.e ** 2 - 1.0), rel=1e-6)


def test_feedback_share_and_the_vae_constraint():
    assert float(feedback_share(torch.tensor(1.0), torch.tensor(4.0))) == pytest.approx(0.75)
    assert float(feedback_share(torch.tensor(2.0), torch.tensor(1.0))) == 0.0  # a code that hurts: 0
    kl = torch.tensor(3.0)
    cap = CLDisConfig(feedback="capacity", c_max=10.0, gamma=100.0)
    reg, logged = vae_constraint(kl, torch.tensor(0.2), cap)
    assert float(reg) == pytest.approx(100.0 * abs(3.0 - 2.0)) and float(logged["capacity"]) == pytest.approx(2.0)
    beta = CLDisConfig(feedback="beta", beta=4.0, beta_min=1.0)
    reg, logged = vae_constraint(kl, torch.tensor(0.5), beta)
    assert float(logged["beta"]) == pytest.approx(2.5) and float(reg) == pytest.approx(7.5)
    fixed = CLDisConfig(feedback="none", beta=4.0)
    assert float(vae_constraint(kl, torch.tensor(0.9), fixed)[0]) == pytest.approx(12.0)


def test_the_total_loss_is_the_sum_of_its_terms():
    m, _ = tiny_method(["method.distill_weight=0.3", "method.feedback=capacity"])
    m.feedback_u.fill_(0.4)
    x = torch.rand(4, 3, 16, 16) * 2 - 1
    draws = m.draw(x, torch.Generator().manual_seed(1))
    out = m.loss_given_draws(x, draws, torch.tensor(0.0))
    want = out["diffusion"] + 0.3 * out["distill"] + out["vae_reconstruction"] + 1000.0 * (
        out["vae_kl"] - 25.0 * 0.4).abs()
    assert torch.allclose(out["loss"], want, rtol=1e-5)
    assert float(out["capacity"]) == pytest.approx(10.0) and float(out["feedback_u"]) == pytest.approx(0.4)


def _grads(m, loss):
    m.zero_grad(set_to_none=True)
    loss.backward(retain_graph=True)
    parts = {"encoder": m.encoder, "project": m.project, "student_log_var": m.student_log_var, "unet": m.unet,
             "vae_encoder": m.vae_encoder, "vae_decoder": m.vae_decoder}
    return {name: any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in mod.parameters())
            for name, mod in parts.items()}


def test_gradients_flow_where_the_design_note_says():
    m, _ = tiny_method()
    m.feedback_u.fill_(0.3)
    with torch.no_grad():  # as after training: the U-Net's zero-initialised code inputs no longer zero
        for p in m.unet.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(3)))
    x = torch.rand(4, 3, 16, 16) * 2 - 1
    terms = m.loss_terms(x, m.draw(x, torch.Generator().manual_seed(2)))
    assert _grads(m, terms["distill"]) == {"encoder": True, "project": True, "student_log_var": True,
                                           "unet": False, "vae_encoder": False, "vae_decoder": False}
    assert _grads(m, terms["diffusion"]) == {"encoder": True, "project": True, "student_log_var": False,
                                             "unet": True, "vae_encoder": False, "vae_decoder": False}
    assert _grads(m, terms["vae_loss"]) == {"encoder": False, "project": False, "student_log_var": False,
                                            "unet": False, "vae_encoder": True, "vae_decoder": True}
    # the co-pilot has its own optimizer; the trainer's main one gets everything else
    extra = {id(p) for e in m.extra_optimizers() for p in e.params}
    assert extra == {id(p) for p in [*m.vae_encoder.parameters(), *m.vae_decoder.parameters()]}


def test_feedback_measures_what_the_code_removes():
    """Every image the same: the swapped code is the own code, so u = 0 exactly. A
    denoiser that returns the image its code names removes all of the loss with the own
    code and none of it with the next image's: u = 1."""
    m, _ = tiny_method()
    m.eval()
    same = (torch.rand(1, 3, 16, 16) * 2 - 1).expand(4, -1, -1, -1).contiguous()
    assert float(m.measure_feedback(same, torch.Generator().manual_seed(0))) == 0.0
    m.condition = lambda images: {"unet": {}, "codes": images.flatten(1)}
    m.condition_from_flat = lambda codes: {"unet": {}, "codes": codes}
    m.denoise = lambda x, sigma, cond: cond["codes"].view_as(x)
    differ = torch.rand(4, 3, 16, 16) * 2 - 1
    assert float(m.measure_feedback(differ, torch.Generator().manual_seed(0))) == 1.0
    # half the error back: u = 1 - own / swapped
    m.denoise = lambda x, sigma, cond: 0.5 * cond["codes"].view_as(x)
    own = sum((0.5 * differ).square().mean() for _ in range(5))
    swapped = sum((0.5 * differ.roll(1, 0) - differ).square().mean() for _ in range(5))
    assert float(m.measure_feedback(differ)) == pytest.approx(float(1 - own / swapped), rel=1e-5)


def test_groups_and_representation():
    m, _ = tiny_method()
    assert m.groups == [("z1", 1), ("z2", 1), ("z3", 1), ("free", 2)]
    x = torch.rand(3, 3, 16, 16) * 2 - 1
    codes = m.encode(x)
    assert codes.shape == (3, 5)
    assert torch.allclose(codes, m.eval().condition(x)["codes"])


def test_config_is_checked():
    with pytest.raises(FdaeError, match="method.feedback"):
        load_config("cldis-shapes3d-synth", ["method.feedback=sometimes"])
    with pytest.raises(FdaeError, match="method.free_dims"):
        load_config("cldis-shapes3d-synth", ["method.free_dims=-1"])
    with pytest.raises(FdaeError, match="method.vae_lr"):
        load_config("cldis-shapes3d-synth", ["method.vae_lr=0"])
    assert load_config("cldis-dsprites-synth").data.name == "dsprites-synth"


def test_stopped_and_resumed_equals_uninterrupted(tmp_path):
    """The feedback buffer (measured at steps 2, 4, 6 under the EMA weights), both
    optimizers and every weight of a run stopped at 3 and resumed equal an uninterrupted
    run's, bit for bit."""
    from fdae.train.checkpoint import load_run
    from fdae.train.loop import train

    over = [*TINY, "train.steps=6", "train.ema_decay=0.9"]
    straight = tmp_path / "straight"
    train(load_config("cldis-shapes3d-synth", [*over, "train.ckpt_every=0"]), straight, progress=False,
          tensorboard=False)
    split = tmp_path / "split"
    train(load_config("cldis-shapes3d-synth", [*over, "train.steps=3", "train.ckpt_every=3"]), split,
          progress=False, tensorboard=False)
    train(load_config("cldis-shapes3d-synth", [*over, "train.ckpt_every=3"]), split, resume=True, progress=False,
          tensorboard=False)
    a = load_run(straight, device="cpu", use_ema=False).method.state_dict()
    b = load_run(split, device="cpu", use_ema=False).method.state_dict()
    assert a.keys() == b.keys() and "feedback_u" in a
    for k in a:
        assert torch.equal(a[k], b[k]), k
