"""DisDiff: stage 1 (an unconditional DDPM) and stage 2 (per-unit fields on the frozen
model). The frozen weights stay frozen, the part embeddings are orthogonal, the
cross-entropies equal a hand computation, the disentangling loss trains G and not E,
resume is exact, and a bad stage-1 path is one clear message."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fdae.cli import main
from fdae.config import load_config
from fdae.errors import FdaeError
from fdae.methods.disdiff import disdiff_cross_entropies
from fdae.train.checkpoint import load_run
from fdae.train.loop import initial_method, train

COMMON = ["data.image_size=16", "train.batch_size=4", "train.device=cpu", "train.log_every=1", "train.image_every=0",
          "train.eval_every=0", "method.sample_steps=2"]
STAGE1 = [*COMMON, "unet.channels=16", "unet.channel_mult=[1,2]", "unet.attn_resolutions=[8]", "unet.head_channels=16"]
STAGE2 = [*COMMON, "method.num_units=3", "method.unit_dim=4", "method.encoder_width=8", "method.part_dim=8",
          "eval.num_train=100", "eval.num_test=50", "eval.num_votes_train=30", "eval.num_votes_eval=20"]


@pytest.fixture(scope="module")
def stage1(tmp_path_factory):
    run = tmp_path_factory.mktemp("disdiff") / "stage1"
    cfg = load_config("disdiff-shapes3d-synth-stage1", [*STAGE1, "train.steps=2", "train.ckpt_every=0"])
    train(cfg, run, progress=False, tensorboard=False)
    return run


def stage2_cfg(stage1, *extra):
    return load_config("disdiff-shapes3d-synth-stage2", [*STAGE2, f"method.pretrained={stage1}", *extra])


def test_stage2_leaves_the_frozen_model_unchanged(stage1, tmp_path):
    before = {k: v.clone() for k, v in load_run(stage1, device="cpu").method.state_dict().items()}
    train(stage2_cfg(stage1, "train.steps=3", "train.ckpt_every=0"), tmp_path / "s2", progress=False,
          tensorboard=False)
    after = load_run(tmp_path / "s2", device="cpu", use_ema=False).method
    prior = after.prior.state_dict()
    assert prior.keys() == before.keys()
    for k in before:
        assert torch.equal(prior[k], before[k]), k
    # ... while the encoder and the fields did train
    fresh = initial_method(stage2_cfg(stage1), load_run(stage1).dataset)
    assert not torch.equal(fresh.encoder[1].weight, after.encoder[1].weight)
    assert not torch.equal(fresh.part_w, after.part_w)


def test_part_embeddings_are_orthogonal(stage1):
    m = initial_method(stage2_cfg(stage1), load_run(stage1).dataset)
    with torch.no_grad():
        m.part_w.normal_(0, 1.0)  # far from the identity
        full = torch.linalg.matrix_exp(m.part_w - m.part_w.T)
    assert torch.allclose(full @ full.T, torch.eye(8), atol=1e-5)
    p = m.part_embeddings()
    assert p.shape == (3, 8) and torch.allclose(p @ p.T, torch.eye(3), atol=1e-5)


def test_cross_entropies_equal_a_hand_computation():
    # B = 1, N = 2 units of D = 2: unit 1's field was added
    zh = torch.tensor([[[0.0, 0.0], [1.0, 0.0]]])
    zh_c = torch.tensor([[[0.0, 0.0], [4.0, 4.0]]])
    z = torch.tensor([[[3.0, 4.0], [1.0, 0.0]]])
    unit = torch.tensor([1])
    x0_theta, x0_c = torch.zeros(1, 1, 2, 2), torch.full((1, 1, 2, 2), 0.5)
    # variant logits: |zh_k - z_k| - |zh_c_k - z_k| = (5 - 5, 0 - 5) = (0, -5)
    # invariant logits: |zh_k - zh_c_k| = (0, 5); weight w = mean(0.5^2) = 0.25
    ce_var = -math.log(math.exp(-5) / (math.exp(0) + math.exp(-5)))
    ce_inv = -math.log(math.exp(5) / (math.exp(0) + math.exp(5)))
    got = disdiff_cross_entropies(zh, zh_c, z, unit, x0_theta, x0_c)
    assert got.item() == pytest.approx(0.25 * (ce_var + ce_inv), rel=1e-6)
    # a batch is the mean over samples of each sample's weighted sum
    two = disdiff_cross_entropies(zh.repeat(2, 1, 1), zh_c.repeat(2, 1, 1), z.repeat(2, 1, 1), torch.tensor([1, 0]),
                                  x0_theta.repeat(2, 1, 1, 1), x0_c.repeat(2, 1, 1, 1))
    ce0 = F.cross_entropy(torch.tensor([[0.0, -5.0]]), torch.tensor([0])) + F.cross_entropy(
        torch.tensor([[0.0, 5.0]]), torch.tensor([0]))
    assert two.item() == pytest.approx(0.5 * (0.25 * (ce_var + ce_inv) + 0.25 * ce0.item()), rel=1e-6)


def test_the_disentangling_loss_trains_g_and_not_e(stage1):
    """The gradients of L_r + lambda L_dis and of L_r alone are equal on E's parameters
    and differ on G's: L_dis reaches G (and the part embeddings) only."""
    ds = load_run(stage1).dataset
    grads = {}
    for weight in (0.05, 0.0):
        torch.manual_seed(0)
        m = initial_method(stage2_cfg(stage1, f"method.disentangle_weight={weight}"), ds)
        m.train()
        with torch.no_grad():  # G's zero-initialised layers as after some training
            for p in m.fields_net.parameters():
                if torch.count_nonzero(p) == 0:
                    p.normal_(0, 0.05)
        images = ds.images(ds.sample_factors(4, np.random.RandomState(0)))
        draws = m.draw(images, torch.Generator().manual_seed(1))
        terms = m.loss_given_draws(images, draws, torch.tensor(0.0))
        assert ("l_dis" in terms) == (weight > 0)
        terms["loss"].backward()
        grads[weight] = {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}
        assert not any(n.startswith("prior.") for n in grads[weight])  # the frozen model gets none
    with_dis, without = grads[0.05], grads[0.0]
    enc = [n for n in with_dis if n.startswith("encoder.")]
    assert enc and all(torch.equal(with_dis[n], without[n]) for n in enc)

    # Gradients of float-noise size prove nothing: a field net that ignored its time
    # embedding gave the part embeddings gradients of ~1e-9 of G's (moving "by 1%" on
    # noise). Each compared gradient must be at least 1e-4 of G's own (measured: 3e-3).
    scale = torch.stack([without[n].norm() for n in without if n.startswith("fields_net.")]).norm()

    def moved(name):  # the disentangling loss changes this real gradient by more than 1%
        a, b = with_dis[name], without[name]
        return b.norm() > 1e-4 * scale and (a - b).norm() > 0.01 * b.norm()

    assert any(moved(n) for n in with_dis if n.startswith("fields_net."))
    assert moved("part_w") and moved("part_proj.weight")


def test_stage2_resumes_exactly(stage1, tmp_path):
    over = ["train.steps=4", "train.ema_decay=0.9"]
    train(stage2_cfg(stage1, *over, "train.ckpt_every=0"), tmp_path / "a", progress=False, tensorboard=False)
    train(stage2_cfg(stage1, "train.steps=2", "train.ema_decay=0.9", "train.ckpt_every=2"), tmp_path / "b",
          progress=False, tensorboard=False)
    train(stage2_cfg(stage1, *over, "train.ckpt_every=2"), tmp_path / "b", resume=True, progress=False,
          tensorboard=False)
    for use_ema in (False, True):
        a = load_run(tmp_path / "a", use_ema=use_ema).method.state_dict()
        b = load_run(tmp_path / "b", use_ema=use_ema).method.state_dict()
        for k in a:
            assert torch.equal(a[k], b[k]), k


def test_a_missing_or_wrong_stage1_run_is_one_clear_message(stage1, tmp_path):
    ds = load_run(stage1).dataset
    with pytest.raises(FdaeError, match="does not exist.*train stage 1 first"):
        initial_method(stage2_cfg(tmp_path / "nowhere"), ds)
    other = tmp_path / "vae"
    train(load_config("beta-vae-shapes3d-synth", ["train.steps=1", "data.image_size=16", "train.device=cpu",
                                                  "train.image_every=0", "train.ckpt_every=0"]),
          other, progress=False, tensorboard=False)
    with pytest.raises(FdaeError, match="is a beta-vae run, not a DisDiff stage-1"):
        initial_method(stage2_cfg(other), ds)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FdaeError, match="not a usable stage-1 run"):
        initial_method(stage2_cfg(tmp_path / "empty"), ds)
    with pytest.raises(FdaeError, match="at 16 px, stage 2 trains on shapes3d-synth at 32 px"):
        from fdae.data import get_dataset

        initial_method(load_config("disdiff-shapes3d-synth-stage2", [f"method.pretrained={stage1}"]),
                       get_dataset("shapes3d-synth", image_size=32))
    with pytest.raises(FdaeError, match="method.pretrained"):
        load_config("disdiff-shapes3d-synth-stage2", ["method.pretrained="])


def test_the_cli_trains_evaluates_and_draws_both_stages(stage1, tmp_path, capsys):
    s2 = tmp_path / "s2"
    assert main(["train", "--config", "disdiff-shapes3d-synth-stage2", "--run-dir", str(s2), *STAGE2,
                 f"method.pretrained={stage1}", "train.steps=2", "train.ckpt_every=1"]) == 0
    # codes at any checkpoint, not only at the end: the first one is evaluated
    first = sorted((s2 / "checkpoints").glob("*.pt"))[0]
    assert main(["eval", str(first), "--metrics", "mig,factor_vae", "--num-train", "100", "--num-test", "50",
                 "--votes-train", "30", "--votes-eval", "20", "--out", str(tmp_path / "r.json")]) == 0
    res = json.loads((tmp_path / "r.json").read_text())
    assert res["protocol"] == "unit-pca" and res["settings"]["unit_pca"]["units"] == 3 and res["code_dim"] == 12
    assert main(["viz", str(s2), "--n", "2", "--steps", "2", "--out", str(tmp_path / "fig2")]) == 0
    assert {p.name for p in (tmp_path / "fig2").iterdir()} >= {"reconstructions.png", "unit_swaps.png",
                                                                "traversals.png"}
    assert main(["viz", str(stage1), "--n", "2", "--steps", "2", "--out", str(tmp_path / "fig1")]) == 0
    assert (tmp_path / "fig1" / "samples.png").is_file()
    capsys.readouterr()
    assert main(["eval", str(stage1), "--metrics", "mig"]) != 0
    assert "has no representation" in capsys.readouterr().err
    # the background evaluator's encoder: no frozen model or fields, the same codes
    from fdae.train.async_eval import build_encoder, encoder_state

    run = load_run(s2)
    state = encoder_state(run.method)
    assert state and not any(k.startswith(("prior.", "fields_net.")) for k in state)
    enc = build_encoder(run.cfg, state, 3, 16, torch.device("cpu"), "test")
    x = run.dataset.images(run.dataset.sample_factors(3, np.random.RandomState(0)))
    assert torch.equal(enc.encode(x), run.method.encode(x))


def test_the_stage1_path_is_saved_absolute(stage1, tmp_path, monkeypatch):
    from fdae.config import with_absolute_paths

    monkeypatch.chdir(stage1.parent)
    cfg = with_absolute_paths(stage2_cfg("stage1"))
    assert cfg.method.pretrained == str(stage1)


def test_stage1_logs_samples_during_training(tmp_path):
    cfg = load_config("disdiff-shapes3d-synth-stage1", [*STAGE1, "train.steps=1", "train.ckpt_every=0",
                                                        "train.image_every=1", "train.image_steps=2"])
    train(cfg, tmp_path / "s1", progress=False, tensorboard=False)
    assert [p.name for p in (tmp_path / "s1" / "images").glob("*.png")] == ["figures_samples_00000001.png"]
