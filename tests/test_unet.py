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
