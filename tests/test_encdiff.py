"""EncDiff and Dynamic Gaussian Anchoring: the mixture fit recovers known clusters, splits
and prunes as specified, the anchoring equals its formula, the method trains, evaluates
and resumes exactly with DyGA and Skip Dropout on."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fdae.config import DygaConfig, load_config
from fdae.errors import FdaeError
from fdae.methods.dyga import GaussianAnchors, Mixture, anchor_weight, fit_mixtures, prune

TINY = ["data.image_size=16", "method.encoder_width=8", "method.num_units=4", "method.token_dim=8",
        "method.unit_widths=[8]", "unet.channels=16", "unet.channel_mult=[1,2]", "unet.attn_resolutions=[8]",
        "unet.head_channels=16", "train.batch_size=4", "train.device=cpu", "train.log_every=1",
        "train.image_every=0", "train.eval_every=0"]


def blobs(centres, counts, std=0.02, seed=0):
    g = torch.Generator().manual_seed(seed)
    c = torch.tensor(centres, dtype=torch.float64)
    return torch.cat([c[i] + std * torch.randn(n, c.shape[1], generator=g, dtype=torch.float64)
                      for i, n in enumerate(counts)])


def active_means(mix: Mixture, unit: int) -> np.ndarray:
    return mix.means[unit][mix.active[unit]].numpy()


def test_em_recovers_known_clusters():
    centres = [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]
    x = blobs(centres, [300, 300, 300])[None]  # one unit
    mix = fit_mixtures(x, DygaConfig(components=8, max_components=16), torch.Generator().manual_seed(0))
    means = active_means(mix, 0)
    dist = np.linalg.norm(means[:, None] - np.array(centres)[None], axis=-1)  # component x centre
    assert dist.min(0).max() < 0.02  # every cluster has a component at its centre
    assert dist.min(1).max() < 0.05  # and no component sits between clusters
    assert math.isclose(float(mix.log_w[0][mix.active[0]].exp().sum()), 1.0, rel_tol=1e-9)


def test_a_too_wide_component_is_split_and_a_narrow_one_is_not():
    x = blobs([[0.0, 0.0], [1.0, 1.0]], [300, 300])[None]
    one = DygaConfig(components=1, max_components=8)
    mix = fit_mixtures(x, one, torch.Generator().manual_seed(0))
    assert int(mix.active.sum()) == 2  # points 0.71 from the one mean: split once, then both narrow
    means = sorted(active_means(mix, 0).tolist())
    assert np.allclose(means, [[0.0, 0.0], [1.0, 1.0]], atol=0.02)
    assert np.allclose(mix.log_w[0][mix.active[0]].exp().numpy(), [0.5, 0.5], atol=0.01)
    capped = fit_mixtures(x, DygaConfig(components=1, max_components=1), torch.Generator().manual_seed(0))
    assert int(capped.active.sum()) == 1  # no room to split
    strict = fit_mixtures(x, DygaConfig(components=1, max_components=8, split_distance=0.8),
                          torch.Generator().manual_seed(0))
    assert int(strict.active.sum()) == 1  # 0.71 is not wider than 0.8


def test_light_components_are_pruned():
    x = blobs([[0.0, 0.0], [1.0, 1.0], [0.0, 1.0]], [300, 300, 5])[None]
    centres = torch.tensor([[[0.0, 0.0], [1.0, 1.0], [0.0, 1.0]]], dtype=torch.float64)
    mix = Mixture(torch.cat([centres, torch.zeros(1, 1, 2, dtype=torch.float64)], 1),
                  0.01 * torch.eye(2, dtype=torch.float64).expand(1, 4, 2, 2).clone(),
                  torch.tensor([[math.log(300 / 605), math.log(300 / 605), math.log(5 / 605), -math.inf]],
                               dtype=torch.float64),
                  torch.tensor([[True, True, True, False]]))
    out = prune(x, mix, DygaConfig(min_mass=10))
    assert out.active.tolist() == [[True, True, False, False]]  # mass 5 < 10
    assert np.allclose(active_means(out, 0), [[0.0, 0.0], [1.0, 1.0]], atol=0.02)
    assert math.isclose(float(out.log_w[0][out.active[0]].exp().sum()), 1.0, rel_tol=1e-9)
    alone = prune(x, mix, DygaConfig(min_mass=1000))
    assert int(alone.active.sum()) == 1  # every component too light: the heaviest stays


def test_anchoring_equals_the_formula():
    cfg = DygaConfig(components=2, max_components=4, weight=0.1)
    anchors = GaussianAnchors(2, 2, cfg)
    c = torch.tensor([[[0.3, 0.2], [5.0, 6.0]]])  # before a fit: the identity
    assert torch.equal(anchors(c), c)
    feats = torch.stack([blobs([[0.0, 0.0], [1.0, 1.0]], [200, 200]),
                         blobs([[4.0, 4.0], [8.0, 6.0]], [200, 200], seed=1)], 1).float()  # n, U=2, d=2
    anchors.fit(feats, torch.Generator().manual_seed(0))
    cq = anchors.nearest(c)
    assert torch.allclose(cq, torch.tensor([[[0.0, 0.0], [4.0, 4.0]]]), atol=0.05)  # raw-space means
    lam = 0.1 * torch.exp(-((c - cq) / (c + 1e-6)).abs().mean(-1, keepdim=True))
    assert torch.allclose(anchor_weight(c, cq, 0.1), lam)
    assert torch.allclose(anchors(c), lam * cq + (1 - lam) * c)
    # by hand, unit 0: cq = (0, 0), |(c - cq) / c| = (1, 1), lam = 0.1 / e
    got = anchors(c)[0, 0]
    want = (1 - 0.1 / math.e) * c[0, 0]
    assert torch.allclose(got, want, atol=2e-3)  # cq is the fitted mean, (0, 0) up to the noise
    # gradients reach the feature, scaled by 1 - lam; the anchor is a target
    c.requires_grad_(True)
    anchors(c).sum().backward()
    assert torch.allclose(c.grad, (1 - lam).expand_as(c))


def test_anchors_are_part_of_the_state_dict():
    a = GaussianAnchors(3, 2, DygaConfig())
    a.fit(torch.randn(200, 3, 2), torch.Generator().manual_seed(0))
    b = GaussianAnchors(3, 2, DygaConfig())
    b.load_state_dict(a.state_dict())
    c = torch.randn(5, 3, 2)
    assert bool(b.fitted) and torch.equal(a(c), b(c))


def test_dyga_config_is_checked():
    with pytest.raises(FdaeError, match="dyga.max_components"):
        load_config("encdiff-shapes3d-synth", ["dyga.components=8", "dyga.max_components=4"])
    with pytest.raises(FdaeError, match="dyga"):
        load_config("beta-vae-dsprites-synth", ["dyga.enabled=true"])  # a method without units
    with pytest.raises(FdaeError, match="dyga.reg"):
        load_config("encdiff-shapes3d-synth", ["dyga.reg=0"])
    with pytest.raises(FdaeError, match="dyga.min_mass"):
        load_config("encdiff-shapes3d-synth", ["dyga.min_mass=-1"])


# --- the method -----------------------------------------------------------------------
def test_encdiff_builds_encodes_and_trains(tmp_path):
    from fdae.data import get_dataset
    from fdae.train.checkpoint import load_run
    from fdae.train.loop import initial_method, train

    cfg = load_config("encdiff-shapes3d-synth", [*TINY, "train.steps=3", "train.ckpt_every=0"])
    ds = get_dataset(cfg.data.name, image_size=16)
    m = initial_method(cfg, ds)
    x = ds.images(ds.sample_factors(5, np.random.RandomState(0)))
    assert m.encode(x).shape == (5, 4) and m.groups == [(f"unit{u}", 1) for u in range(4)]
    cond = m.condition(x)
    assert cond["unet"]["context"].shape == (5, 4, 8)
    # the tokens are the per-unit MLPs of the scalars: unit u's token depends on scalar u only
    s = cond["scalars"].detach()
    s2 = s.clone()
    s2[:, 1] += 1.0
    t1, t2 = m.tokens_of(s), m.tokens_of(s2)
    assert torch.equal(t1[:, [0, 2, 3]], t2[:, [0, 2, 3]]) and not torch.allclose(t1[:, 1], t2[:, 1])
    assert torch.allclose(m.condition_from_flat(m.encode(x))["unet"]["context"], m.eval().tokens_of(m.encode(x)))
    res = train(cfg, tmp_path / "run", progress=False, tensorboard=False)
    assert res.step == 3
    tok = load_config("encdiff-shapes3d-synth", [*TINY, "method.representation=tokens"])
    mt = initial_method(tok, ds)
    assert mt.encode(x).shape == (5, 32) and mt.groups[0] == ("unit0", 8)
    assert load_run(tmp_path / "run", device="cpu").method.encode(x).shape == (5, 4)


FDAE_TINY = ["data.image_size=16", "method.num_concepts=2", "method.content_dim=4", "method.mask_dim=4",
             "method.adjust_dim=4", "method.encoder_width=8", "method.mask_decoder_width=12", "unet.channels=16",
             "unet.channel_mult=[1,2]", "unet.attn_resolutions=[8]", "unet.head_channels=16", "train.batch_size=4",
             "train.device=cpu", "train.log_every=1", "train.image_every=0", "train.eval_every=0"]


@pytest.mark.parametrize("preset,small", [("encdiff-shapes3d-synth", TINY), ("shapes3d-tiny", FDAE_TINY)],
                         ids=["encdiff", "fdae"])
def test_dyga_and_skip_dropout_resume_exactly(tmp_path, preset, small):
    """Both plug-ins on EncDiff's tokens and on FDAE's content codes: the fits (at steps 2,
    4, 6) and the dropped skips of a run stopped at step 3 and resumed equal an
    uninterrupted run's, bit for bit."""
    from fdae.train.checkpoint import load_run
    from fdae.train.loop import train

    over = [*small, "train.steps=6", "unet.skip_dropout=0.2", "dyga.enabled=true", "dyga.every=2",
            "dyga.num_samples=40", "dyga.components=2", "dyga.max_components=4", "dyga.em_steps=5",
            "train.ema_decay=0.9"]
    straight = tmp_path / "straight"
    train(load_config(preset, [*over, "train.ckpt_every=0"]), straight, progress=False, tensorboard=False)
    split = tmp_path / "split"
    first = load_config(preset, [*over, "train.steps=3", "train.ckpt_every=3"])
    train(first, split, progress=False, tensorboard=False)  # stops at 3 (a fit at 2 is in the checkpoint)
    train(load_config(preset, [*over, "train.ckpt_every=3"]), split, resume=True, progress=False, tensorboard=False)
    a = load_run(straight, device="cpu", use_ema=False).method.state_dict()
    b = load_run(split, device="cpu", use_ema=False).method.state_dict()
    assert a.keys() == b.keys() and "anchors.means" in a
    assert bool(a["anchors.fitted"]) and int(a["anchors.active"].sum()) >= 2
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # the anchors act on the conditioning (and, for FDAE, on the codes evaluation sees)
    run = load_run(straight, device="cpu")
    m = run.method.train()  # batch statistics: after 6 steps the running ones barely vary the codes
    calls = []
    m.anchors.register_forward_hook(lambda mod, inp, out: calls.append(torch.equal(inp[0], out)))
    x = run.dataset.images(run.dataset.sample_factors(4, np.random.RandomState(0)))
    with torch.no_grad():
        m.condition(x)
        m.encode(x)
    # the conditioning is anchored, and so are the codes where they are the anchored
    # features (FDAE's content codes; EncDiff's scalars come before the tokens)
    assert len(calls) == (1 if preset.startswith("encdiff") else 2) and not calls[0]


def test_unit_swaps_figure(tmp_path):
    """Swapping a unit for the same image's own code changes nothing; for another image's,
    the decode differs; the CLI's figure set includes it."""
    from fdae.commands.viz import write_figures
    from fdae.data import get_dataset
    from fdae.train.loop import initial_method
    from fdae.viz.figures import unit_swap_figure

    cfg = load_config("encdiff-shapes3d-synth", TINY)
    ds = get_dataset(cfg.data.name, image_size=16)
    m = initial_method(cfg, ds)
    with torch.no_grad():  # outputs that depend on the tokens (the zero-initialised layers trained)
        for p in m.parameters():
            if torch.count_nonzero(p) == 0:
                p.normal_(0, 0.05)
    x = ds.images(ds.sample_factors(4, np.random.RandomState(0)))
    same = unit_swap_figure(m, x[:2], x[:2], steps=2)
    cell = 16 + 2  # tile: cells of 16 px after 2 px gaps
    assert same.shape[:2] == (2 * cell + 2, (2 + 4) * cell + 2)  # image, donor, 4 units
    cols = [same[:, 2 + (2 + u) * cell: 2 + (2 + u) * cell + 16] for u in range(4)]
    assert all(np.array_equal(cols[0], c) for c in cols[1:])  # own code swapped in: identical decodes
    other = unit_swap_figure(m, x[:2], x[2:], steps=2)
    assert not np.array_equal(other, same)
    written = write_figures(m, ds, tmp_path, n=2, steps=2)
    assert set(written) == {"reconstructions", "traversals", "unit_swaps"}
