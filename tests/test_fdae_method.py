"""FDAE: its losses against hand computations, masks, condition map and ablations."""

import math

import pytest
import torch

from fdae.config import load_config
from fdae.methods import build_method
from fdae.methods.losses import content_decorrelation_loss, mask_entropy_loss


def reference_cd(codes):
    """L_CD written out with loops, as the definition reads."""
    b, n, d = codes.shape
    c = codes - codes.mean(0, keepdim=True)
    total, count = 0.0, 0
    for i in range(n):
        for j in range(n):
            if i == j:
                continue
            g = 0.0
            for s in range(b):
                ci = c[s, i] / max(c[s, i].norm().item(), 1e-12) / n
                cj = c[s, j] / max(c[s, j].norm().item(), 1e-12) / n
                g += float(ci @ cj)
            total += abs(g)
            count += 1
    return total / count


def test_content_decorrelation_hand_cases():
    orthogonal = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[-1.0, 0.0], [0.0, -1.0]]])
    assert content_decorrelation_loss(orthogonal).item() == pytest.approx(0.0)
    # the two concepts carry the same code: G_01 = sum_s |v_s / 2|^2 = 2 * 1/4
    same = torch.tensor([[[1.0, 0.0], [1.0, 0.0]], [[-1.0, 0.0], [-1.0, 0.0]]])
    assert content_decorrelation_loss(same).item() == pytest.approx(0.5)
    g = torch.Generator().manual_seed(0)
    codes = torch.randn(5, 3, 4, generator=g)
    assert content_decorrelation_loss(codes).item() == pytest.approx(reference_cd(codes), rel=1e-5)


def test_content_decorrelation_edge_cases():
    assert content_decorrelation_loss(torch.randn(4, 1, 8)).item() == 0.0  # N = 1
    constant = torch.ones(4, 3, 8)  # every sample equal: centred codes are 0, no NaN
    assert content_decorrelation_loss(constant).item() == 0.0


def test_mask_entropy_hand_cases():
    n = 4
    uniform = torch.full((2, n, 3, 3), 1.0 / n)
    assert mask_entropy_loss(uniform).item() == pytest.approx(math.log(n), rel=1e-6)
    onehot = torch.zeros(2, n, 3, 3)
    onehot[:, 1] = 1.0
    assert mask_entropy_loss(onehot).item() == pytest.approx(0.0, abs=1e-12)
    mixed = torch.zeros(1, 2, 1, 2)
    mixed[0, :, 0, 0] = torch.tensor([0.25, 0.75])
    mixed[0, :, 0, 1] = torch.tensor([1.0, 0.0])
    expected = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75)) / 2
    assert mask_entropy_loss(mixed).item() == pytest.approx(expected, rel=1e-6)


def tiny(overrides=()):
    cfg = load_config(None, ["unet.preset=tiny", "method.encoder_width=16", *overrides])
    torch.manual_seed(0)
    return build_method(cfg)


def test_masks_and_condition_map():
    model = tiny(["method.num_concepts=3", "method.adjust_dim=8"]).eval()
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    cond = model.condition(x)
    masks = cond["masks"]
    assert masks.shape == (2, 3, 64, 64)
    assert (masks >= 0).all()
    assert torch.allclose(masks.sum(1), torch.ones(2, 64, 64), atol=1e-5)
    cmap = cond["unet"]["cond_map"]
    assert cmap.shape == (2, 8, 64, 64)
    # C = sum_n (W_n f_n + b_n) M_n, written out concept by concept
    cm = model.cmfnet
    expected = torch.zeros_like(cmap)
    for n in range(3):
        adj = cond["content"][:, n] @ cm.adjust_weight[n].T + cm.adjust_bias[n]
        expected += adj[:, :, None, None] * masks[:, n : n + 1]
    assert torch.allclose(cmap, expected, atol=1e-5)
    # representation: N content codes then N mask codes
    assert cond["codes"].shape == (2, 3 * 80 + 3 * 80)
    assert [g[0] for g in model.groups] == [f"content_{i}" for i in range(3)] + [f"mask_{i}" for i in range(3)]
    assert torch.allclose(model.encode(x), cond["codes"])


def test_paper_cmfnet_has_the_official_parameter_count():
    cfg = load_config(None, ["unet.preset=tiny"])
    assert sum(p.numel() for p in build_method(cfg).cmfnet.parameters()) == 14_790_561


def test_ablation_flags_remove_their_parts():
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    full = tiny()
    eg = tiny(["method.use_masks=false", "method.num_concepts=1"])
    n_full = sum(p.numel() for p in full.cmfnet.parameters())
    n_eg = sum(p.numel() for p in eg.cmfnet.parameters())
    mask_parts = sum(p.numel() for p in full.cmfnet.mask_decoder.parameters()) + sum(
        p.numel() for p in full.cmfnet.mask.parameters())
    content_extra = 5 * (80 * 80 + 80) + 512 // 4 * 80 * 5 + 80 * 5  # 5 more concepts' content
    assert n_full - n_eg == mask_parts + content_extra
    assert not hasattr(eg.cmfnet, "mask_decoder")
    assert set(full.loss(x)) == {"loss", "diffusion", "content_decorrelation", "mask_entropy"}
    assert set(eg.loss(x)) == {"loss", "diffusion"}
    no_cd = tiny(["method.content_decorrelation_weight=0"])
    assert set(no_cd.loss(x)) == {"loss", "diffusion", "mask_entropy"}
    no_me = tiny(["method.mask_entropy_weight=0"])
    assert set(no_me.loss(x)) == {"loss", "diffusion", "content_decorrelation"}


def test_total_loss_is_the_weighted_sum():
    model = tiny(["method.content_decorrelation_weight=0.5", "method.mask_entropy_weight=0.25"])
    x = torch.rand(3, 3, 64, 64) * 2 - 1
    t = model.loss(x, generator=torch.Generator().manual_seed(0))
    expected = t["diffusion"] + 0.5 * t["content_decorrelation"] + 0.25 * t["mask_entropy"]
    assert t["loss"].item() == pytest.approx(expected.item(), rel=1e-6)
    t2 = model.loss(x, generator=torch.Generator().manual_seed(0))
    assert t2["loss"].item() == t["loss"].item()  # the generator fixes sigma and noise


def test_gradients_reach_cmfnet_through_the_condition_map():
    model = tiny()
    with torch.no_grad():  # as after some training: the zero-initialised layers are not zero
        for p in model.unet.parameters():
            if torch.count_nonzero(p) == 0:
                p.normal_(0, 0.05)
    model.loss(torch.rand(2, 3, 64, 64) * 2 - 1)["loss"].backward()
    assert model.cmfnet.mask_decoder.fc.weight.grad.abs().sum() > 0
    assert model.cmfnet.adjust_weight.grad.abs().sum() > 0
    assert model.cmfnet.encoder.stem[0].weight.grad.abs().sum() > 0


def test_diffae_representation():
    cfg = load_config(None, ["unet.preset=tiny", "method.name=diffae", "method.latent_dim=32",
                             "method.encoder_width=16"])
    model = build_method(cfg)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    assert model.encode(x).shape == (2, 32)
    assert model.groups == [("latent", 32)]
    assert model.reconstruct(x, steps=3).shape == x.shape


def test_ablation_rows_build_the_paper_rows():
    from fdae.errors import FdaeError
    from fdae.methods.ablations import ABLATIONS, ablation_overrides

    assert set(ABLATIONS) == {"eg", "cmfnet", "cmfnet+cd", "cmfnet+me", "full"}
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    expected_terms = {
        "eg": {"loss", "diffusion"},
        "cmfnet": {"loss", "diffusion"},
        "cmfnet+cd": {"loss", "diffusion", "content_decorrelation"},
        "cmfnet+me": {"loss", "diffusion", "mask_entropy"},
        "full": {"loss", "diffusion", "content_decorrelation", "mask_entropy"},
    }
    for row, terms in expected_terms.items():
        model = tiny(ablation_overrides(row))
        assert set(model.loss(x)) == terms, row
        assert hasattr(model.cmfnet, "mask_decoder") == (row != "eg")
    with pytest.raises(FdaeError, match="unknown ablation"):
        ablation_overrides("nope")


def test_paper_protocol_concepts_of_each_method_and_the_eg_row_keeps_18_dims():
    from fdae.data import get_dataset
    from fdae.methods.ablations import ablation_overrides
    from fdae.train.hooks import evaluate_now

    assert tiny(["method.num_concepts=3"]).paper_concepts == 3
    diffae = build_method(load_config(None, ["unet.preset=tiny", "method.name=diffae", "method.encoder_width=16"]))
    assert diffae.paper_concepts is None  # not FDAE's representation: 36 // its one group
    eg = tiny(ablation_overrides("eg")).eval()
    assert eg.paper_concepts == 1 and eg.groups == [("content_0", 80)]
    # periodic (and background) evaluation hands the model's N to the paper protocol
    cfg = load_config(None, ["unet.preset=tiny", *ablation_overrides("eg"), "eval.metrics=[dci]",
                             "eval.num_train=60", "eval.num_test=30"])
    res = evaluate_now(eg, get_dataset("shapes3d-synth"), cfg, torch.device("cpu"))
    assert res["settings"]["paper"]["reduced_dims"] == [18]  # 36 // (2 x 1), the official formula
    assert res["metrics"]["dci"]["importance_matrix"].shape == (18, 6)
