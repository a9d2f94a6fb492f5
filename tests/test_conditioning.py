"""Every shipped preset builds networks that hear every input they are given.

For each YAML in `fdae/configs` the method is built as the preset says (its U-Net widths,
group norms and conditioning kinds; only the image is 32 px and the `paper` U-Net is cut
to 64 channels, with its additive embedding before groups of 4 channels: the full width
is checked once in test_unet.py), then
every weight is redrawn from a seeded generator (matrices and convolutions N(0, 1/fan_in),
norm scales 1 + 0.1 N(0, 1), biases 0.1 N(0, 1)), so no zero-initialised output layer can
hide an input that the network ignores. Then:

  * the denoiser's raw output changes with its noise level (EDM's c_noise -1 against +1,
    DDPM's t = 10 against 900): not only through EDM's preconditioning;
  * it changes with each group of the method's code (each FDAE concept's content code and
    mask code, each EncDiff unit, Diff-AE's and CL-Dis's units), and each VAE decoder with
    each latent;
  * DisDiff's field G_c changes with the unit c (its part embedding) and with z_c.

"Changes" means by more than 1% of the output's size; the U-Net that added its noise
embedding before one-channel group norms moved by 1e-6 to 7e-6 here.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from fdae.config import list_presets, load_config, preset_path
from fdae.methods import build_method
from fdae.methods.base import DiffusionAutoencoder
from fdae.methods.cldis import CLDis
from fdae.methods.ddpm import DDPM
from fdae.methods.disdiff import DisDiff
from fdae.methods.vae.base import GaussianVAE

SIZE = 32
MIN_CHANGE = 1e-2


def redraw(module: nn.Module, seed: int = 0) -> None:
    """Every parameter from one seeded generator, none zero. A layer's weight (out, in,
    ...) has fan-in in * kernel; stacked per-unit weights have fan-in `in`: (units, in, out)
    for the unit MLPs, (concepts, out, in) for FDAE's dimension adjustment."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.rsplit(".", 2)[-1].startswith("bias") or ".biases." in name or name.endswith("_bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            elif p.dim() >= 2:
                if p.dim() == 3 and name.endswith("adjust_weight"):
                    fan_in = p.shape[2]
                elif p.dim() == 3 and ".weights." in name:
                    fan_in = p.shape[1]
                else:
                    fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(fan_in))
            else:
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))


def change(a: Tensor, b: Tensor) -> float:
    return float((a - b).abs().max() / a.abs().max().clamp_min(1e-12))


def preset_config(name: str, extra: tuple[str, ...] = ()):
    overrides = [f"data.image_size={SIZE}", "train.device=cpu"]
    base = load_config(preset_path(name))
    if "unet" in type(base.method).SECTIONS and base.unet.preset == "paper":
        overrides += ["unet.channels=64"]
    return load_config(preset_path(name), [*overrides, *extra])


def build(name: str):
    cfg = preset_config(name)
    if cfg.method.name == "disdiff":  # stage 2 on a stage-1 model built from its preset
        stage1 = preset_config("disdiff-shapes3d-synth-stage1")
        model = DisDiff(cfg.method, DDPM.build(stage1, 3, SIZE), 3, SIZE)
    else:
        model = build_method(cfg, 3, SIZE)
    redraw(model)
    return model.eval()


def perturbed_groups(model, codes: Tensor):
    """(name, codes with that group moved by a unit-scale draw) for every group."""
    g = torch.Generator().manual_seed(1)
    start = 0
    for name, dims in model.groups:
        moved = codes.clone()
        moved[:, start:start + dims] += torch.randn(codes.shape[0], dims, generator=g) * codes.std().clamp_min(1.0)
        yield name, moved
        start += dims


def check_diffusion_autoencoder(model: DiffusionAutoencoder) -> None:
    g = torch.Generator().manual_seed(2)
    images = torch.rand(2, 3, SIZE, SIZE, generator=g) * 2 - 1
    x = torch.randn(2, 3, SIZE, SIZE, generator=g)
    codes = model.encode(images)

    def raw(c: Tensor, noise_label: float) -> Tensor:
        cond = model.condition_from_flat(c)
        return model.unet(x, torch.full((2,), noise_label), **cond["unet"])

    with torch.no_grad():
        base = raw(codes, -1.0)
        assert change(base, raw(codes, 1.0)) > MIN_CHANGE, "the denoiser does not hear its noise level"
        for group, moved in perturbed_groups(model, codes):
            assert change(base, raw(moved, -1.0)) > MIN_CHANGE, f"the denoiser ignores code group {group}"


def check_vae_decoder(decoder: nn.Module, latents: int) -> None:
    z = torch.randn(2, latents, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        base = decoder(z)
        for k in range(latents):
            moved = z.clone()
            moved[:, k] += 2.0
            assert change(base, decoder(moved)) > MIN_CHANGE, f"the decoder ignores latent {k}"


def check_ddpm(model: DDPM) -> None:
    x = torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        a = model.eps(x, torch.full((2,), 10))
        b = model.eps(x, torch.full((2,), 900))
    assert change(a, b) > MIN_CHANGE, "eps_theta does not hear t"


def check_disdiff(model: DisDiff) -> None:
    check_ddpm(model.prior)
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 3, SIZE, SIZE, generator=g)
    n, d = model.cfg.num_units, model.cfg.unit_dim
    one = torch.randn(2, 1, d, generator=g).expand(2, n, d).contiguous()  # every unit the same code
    with torch.no_grad():
        emb_raw, h, hs, _ = model.frozen_pass(x, torch.full((2,), 500))
        fields = model.fields(h, hs, emb_raw, one)  # B, N, C, H, W
        for c in range(1, n):
            assert change(fields[:, 0], fields[:, c]) > MIN_CHANGE, f"G_{c} equals G_0: the part embedding is unheard"
        moved = one.clone()
        moved[:, 0] += torch.randn(2, d, generator=g)
        assert change(fields[:, 0], model.fields(h, hs, emb_raw, moved)[:, 0]) > MIN_CHANGE, "G_c ignores z_c"
        emb_late = model.frozen_pass(x, torch.full((2,), 50))[0]
        late = model.fields(h, hs, emb_late, one)  # the same features, only t's embedding changed
        assert change(fields, late) > MIN_CHANGE, "G does not hear t"


@pytest.mark.parametrize("name", list_presets())
def test_every_network_of_every_preset_hears_its_inputs(name):
    torch.manual_seed(0)
    model = build(name)
    if isinstance(model, DiffusionAutoencoder):
        check_diffusion_autoencoder(model)
        if isinstance(model, CLDis):  # its co-pilot's decoder too
            check_vae_decoder(model.vae_decoder, model.cfg.distill_dims)
    elif isinstance(model, DisDiff):
        check_disdiff(model)
    elif isinstance(model, DDPM):
        check_ddpm(model)
    elif isinstance(model, GaussianVAE):
        check_vae_decoder(model.decoder, model.cfg.num_latents)
    else:
        pytest.fail(f"no conditioning check for {type(model).__name__}: add one")
