"""The U-Net: presets, shapes, zero-initialised output and both conditioning paths."""

import pytest
import torch

from fdae.diffusion.unet import PRESETS, UNet, count_parameters, make_spec


def test_paper_preset_has_the_official_parameter_count():
    # The official FDAE generator (192 ch, mult 1-2-3-4, 3 blocks, attention 32/16/8,
    # 80-channel condition map) has 281,535,299 parameters.
    net = UNet(make_spec("paper", cond_channels=80))
    assert count_parameters(net) == 281_535_299


@pytest.mark.parametrize("preset", ["tiny", "fast"])
def test_shapes_and_zero_output(preset):
    net = UNet(make_spec(preset, cond_channels=8))
    x = torch.randn(2, 3, 64, 64)
    out = net(x, torch.randn(2), cond_map=torch.randn(2, 8, 64, 64))
    assert out.shape == (2, 3, 64, 64)
    assert torch.count_nonzero(out) == 0  # zero-initialised output convolution


def _perturb_output(net):
    """Give the zero-initialised layers weights, as training would."""
    torch.manual_seed(0)
    with torch.no_grad():
        for p in net.parameters():
            if torch.count_nonzero(p) == 0:
                p.normal_(0, 0.05)


def test_spatial_condition_is_added_after_the_input_conv():
    net = UNet(make_spec("tiny", cond_channels=8)).eval()
    x, cmap, t = torch.randn(2, 3, 64, 64), torch.randn(2, 8, 64, 64), torch.randn(2)
    seen = {}
    handle = net.conv_in.register_forward_pre_hook(lambda m, inp: seen.update(first=inp[0]))
    net(x, t, cond_map=cmap)
    handle.remove()
    assert torch.allclose(seen["first"], net.conv_cond(x) + cmap, atol=1e-6)
    _perturb_output(net)
    a = net(x, t, cond_map=cmap)
    b = net(x, t, cond_map=cmap * 2)
    assert not torch.allclose(a, b)


def test_latent_conditioning_changes_the_output():
    net = UNet(make_spec("tiny", latent_dim=16)).eval()
    _perturb_output(net)
    x, t = torch.randn(2, 3, 64, 64), torch.randn(2)
    a = net(x, t, latent=torch.zeros(2, 16))
    b = net(x, t, latent=torch.randn(2, 16))
    assert not torch.allclose(a, b)
    with pytest.raises(ValueError, match="latent"):
        net(x, t)


def test_overrides_and_unknown_preset():
    spec = make_spec("tiny", channels=16, channel_mult=[1, 2])
    assert spec.channels == 16 and spec.channel_mult == (1, 2)
    assert set(PRESETS) == {"tiny", "fast", "paper"}
    with pytest.raises(KeyError, match="unknown U-Net preset"):
        make_spec("huge")


def test_no_resblock_updown_variant_runs():
    net = UNet(make_spec("tiny", resblock_updown=False))
    assert net(torch.randn(1, 3, 64, 64), torch.zeros(1)).shape == (1, 3, 64, 64)


# --- condition tokens (cross-attention) and Skip Dropout ------------------------------------
def test_cross_attention_reads_the_tokens_once_its_zero_projection_is_learned():
    from fdae.diffusion.unet import Transformer

    net = UNet(make_spec("tiny", image_size=32, context_dim=8)).eval()
    blocks = [m for m in net.modules() if isinstance(m, Transformer)]
    assert len(blocks) == 4  # at 16 px: one block down, two up; one in the middle
    x, t = torch.randn(2, 3, 32, 32), torch.randn(2)
    tokens, other = torch.randn(2, 5, 8), torch.randn(2, 5, 8)
    # as built, each block's output projection is zero: the block is the identity and the
    # tokens cannot change anything (but the output conv must be non-zero to see it)
    with torch.no_grad():
        net.out[-1].weight.normal_(0, 0.05)
        for b in blocks:
            assert torch.count_nonzero(b.proj_out.weight) == 0
    assert torch.equal(net(x, t, context=tokens), net(x, t, context=other))
    _perturb_output(net)
    a, b = net(x, t, context=tokens), net(x, t, context=other)
    assert not torch.allclose(a, b)
    # a set, not a sequence: the order of the tokens does not matter
    assert torch.allclose(a, net(x, t, context=tokens[:, [3, 1, 4, 0, 2]]), atol=1e-5)
    # the cross-attention alone: queries over keys/values projected from the tokens
    att = blocks[0].cross_attn
    q = torch.randn(2, 7, att.q.in_features)
    assert not torch.allclose(att(q, tokens), att(q, other))
    with pytest.raises(ValueError, match="context"):
        net(x, t)


def test_skip_dropout_is_identity_in_eval_and_drops_whole_channels_in_training():
    from fdae.diffusion.unet import skip_dropout

    spec = make_spec("tiny", image_size=32, latent_dim=4, skip_dropout=0.5)
    net, plain = UNet(spec), UNet(make_spec("tiny", image_size=32, latent_dim=4))
    plain.load_state_dict(net.state_dict())  # Skip Dropout adds no parameters
    _perturb_output(net)
    plain.load_state_dict(net.state_dict())
    x, t, z = torch.randn(2, 3, 32, 32), torch.randn(2), torch.randn(2, 4)
    net.eval(), plain.eval()
    assert torch.equal(net(x, t, latent=z), plain(x, t, latent=z))
    net.train(), plain.train()
    assert not torch.allclose(net(x, t, latent=z), plain(x, t, latent=z))
    # the two highest resolutions by default (32 and 16 px here): 4 of the 6 skips
    assert net.skip_dropped == [False, False, True, True, True, True]
    assert UNet(make_spec("tiny", image_size=32, skip_dropout=0.2, skip_dropout_resolutions=[8])).skip_dropped == [
        True, True, False, False, False, False]
    from fdae.errors import FdaeError
    from fdae.methods import check_unet_spec

    with pytest.raises(FdaeError, match=r"names \[64\], where this U-Net has no skips"):
        check_unet_spec(make_spec("tiny", image_size=32, skip_dropout=0.2, skip_dropout_resolutions=[64]))
    # keep rate 1 - p per (sample, channel), the kept ones scaled by 1 / (1 - p)
    torch.manual_seed(0)
    h = torch.ones(400, 50, 3, 3)
    out = skip_dropout(h, 0.2)
    per_channel = out[:, :, :1, :1].expand_as(out)
    assert torch.equal(out, per_channel)  # one decision per (sample, channel)
    assert out.unique().tolist() == pytest.approx([0.0, 1.25])
    keep = (out[:, :, 0, 0] > 0).float().mean().item()
    assert abs(keep - 0.8) < 0.01  # 20,000 draws: std 0.003
    assert abs(out.mean().item() - 1.0) < 0.02


def test_latent_shift_is_a_film_of_the_normalised_features():
    """ADM's scale-shift norm, then the latent's FiLM (latent_shift, DisDiff's fields):
    h <- (GN(h) (1 + s_t) + b_t) (1 + s(z)) + b(z), s_t, b_t one Linear of the time
    embedding and s, b one Linear of z; without latent_shift the scale alone (Diff-AE's
    AdaGN: h <- (GN(h) (1 + s_t) + b_t) (1 + s(z)))."""
    from torch import nn

    from fdae.diffusion.unet import ResBlock

    torch.manual_seed(0)
    x, emb, z = torch.randn(2, 8, 4, 4), torch.randn(2, 16), torch.randn(2, 5)
    for shift in (True, False):
        block = ResBlock(8, 8, 16, 0.0, latent_dim=5, latent_shift=shift)
        assert block.latent.out_features == (16 if shift else 8)
        assert block.emb.out_features == 16  # scale and shift per channel
        block.conv2 = nn.Identity()  # so the output shows the FiLM: x + SiLU(film)
        seen = {}
        block.norm2.register_forward_hook(lambda m, i, o: seen.update(n=o))
        out = block(x, emb, z)
        t_scale, t_shift = block.emb(emb)[:, :, None, None].chunk(2, dim=1)
        timed = seen["n"] * (1 + t_scale) + t_shift
        params = block.latent(z)[:, :, None, None]
        film = timed * (1 + params[:, :8]) + params[:, 8:] if shift else timed * (1 + params)
        assert torch.allclose(out, x + torch.nn.functional.silu(film), atol=1e-6)


def test_additive_embedding_is_the_official_fdae_block_and_refused_before_one_channel_groups():
    """scale_shift=False: h <- GN(h + e_t) (the official FDAE generator, kept by the
    `paper` preset); a U-Net with it is refused where a group holds one channel, since the
    norm would subtract the added embedding exactly."""
    from torch import nn

    from fdae.diffusion.unet import ResBlock, check_conditioning, norm_groups

    torch.manual_seed(0)
    x, emb = torch.randn(2, 8, 4, 4), torch.randn(2, 16)
    block = ResBlock(8, 8, 16, 0.0, scale_shift=False, norm_channels=4)
    assert block.emb.out_features == 8 and block.norm2.num_groups == 2
    block.conv2 = nn.Identity()
    h = block.conv1(torch.nn.functional.silu(block.norm1(x)))
    want = x + torch.nn.functional.silu(block.norm2(h + block.emb(emb)[:, :, None, None]))
    assert torch.allclose(block(x, emb, None), want, atol=1e-6)
    with pytest.raises(ValueError, match="would not hear its noise level"):
        check_conditioning(make_spec("tiny", channels=16, scale_shift=False, norm_channels=1))
    check_conditioning(make_spec("tiny", channels=16, scale_shift=True, norm_channels=1))  # after the norm: fine
    from fdae.config import load_config, preset_path
    from fdae.errors import FdaeError
    from fdae.methods import build_method

    cfg = load_config(preset_path("shapes3d-tiny"), ["unet.scale_shift=false", "unet.norm_channels=1"])
    with pytest.raises(FdaeError, match="unet.scale_shift=true"):
        build_method(cfg, 3, 32)
    # groups: as many as possible (at most 32) of at least norm_channels channels
    assert [norm_groups(c, 4) for c in (16, 32, 48, 64, 96, 192, 960, 3)] == [4, 8, 12, 16, 24, 32, 32, 1]
    assert [norm_groups(c, 1) for c in (16, 48, 192)] == [16, 24, 32]


def test_paper_preset_keeps_the_official_layout():
    """The official generator adds the time embedding before GroupNorm32: 32 groups at every
    width of the paper U-Net (all multiples of 64), as before the scale-shift option. Built
    on the meta device: the layout without 281 M parameters' worth of memory."""
    from fdae.nn.norm import GroupNorm32

    spec = make_spec("paper", cond_channels=80)
    assert spec.scale_shift is False
    with torch.device("meta"):
        net = UNet(spec)
    norms = [m for m in net.modules() if isinstance(m, GroupNorm32)]
    assert norms and all(m.num_groups == 32 for m in norms)
    assert all(m.emb.out_features == m.conv1.out_channels for m in net.modules() if hasattr(m, "emb"))


def test_paper_width_hears_its_noise_level():
    """The paper U-Net at full width (192 channels, additive embedding before 32 groups of
    6) with every weight redrawn: its raw output moves with the noise label."""
    from test_conditioning import MIN_CHANGE, change, redraw

    net = UNet(make_spec("paper", image_size=16, cond_channels=80, attn_resolutions=(8,))).eval()
    redraw(net)
    g = torch.Generator().manual_seed(0)
    x, cmap = torch.randn(1, 3, 16, 16, generator=g), torch.randn(1, 80, 16, 16, generator=g)
    with torch.no_grad():
        a, b = net(x, torch.full((1,), -1.0), cond_map=cmap), net(x, torch.full((1,), 1.0), cond_map=cmap)
    assert change(a, b) > MIN_CHANGE


def test_runs_saved_before_the_option_rebuild_their_network():
    """A saved config without unet.scale_shift is an older run: it is rebuilt with the
    additive embedding and gcd(32, channels) groups, so its weights load as trained; where
    that layout was noise-blind (one channel per group), one message says to train again."""
    from fdae.config import config_from_dict, load_config, preset_path, to_dict
    from fdae.errors import FdaeError
    from fdae.methods import build_method

    def saved(preset):
        data = to_dict(load_config(preset_path(preset), ["data.image_size=32"]))
        del data["unet"]["scale_shift"], data["unet"]["norm_channels"]
        return config_from_dict(data)

    fast = saved("shapes3d-fast")
    assert (fast.unet.scale_shift, fast.unet.norm_channels) == (False, 0)
    with torch.device("meta"):
        model = build_method(fast, 3, 32)
    blocks = [m for m in model.unet.modules() if hasattr(m, "norm2")]
    assert all(b.norm2.num_groups == 32 and b.emb.out_features == b.norm2.num_channels for b in blocks)
    with pytest.raises(FdaeError, match="never saw its noise level. Train it again"):
        build_method(saved("shapes3d-tiny"), 3, 32)
    assert load_config(preset_path("shapes3d-tiny")).unet.scale_shift is None  # a preset: today's default
    with pytest.raises(FdaeError, match="unet.norm_channels"):
        load_config(preset_path("shapes3d-tiny"), ["unet.norm_channels=-1"])
