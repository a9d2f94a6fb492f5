"""Latent navigation (`fdae.navigation`, `fdae navigate`): the method stays frozen, the
navigator learns to tell directions apart on a generator built so that it can, its file
round-trips and a damaged one is named, and the command and `fdae viz` draw it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fdae.cli import main
from fdae.errors import FdaeError
from fdae.methods.base import Method
from fdae.methods.vae.base import GaussianVAE, VAEConfig
from fdae.navigation import (Navigator, Renderer, final_accuracy, load_navigation, navigation_path,
                             save_navigation, train_navigation)

from _train_helpers import DIFFAE_TINY, QUIET, tiny_cfg

SIZE = 32


@pytest.fixture(autouse=True)
def _one_thread():
    """These models are tiny: one thread is as fast, and on a busy machine several threads
    slow each other down many times over (what `fdae.threads` does for the CLI)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ---------------------------------------------------------------------------- a constructed generator
class Stripes:
    """Images of `units` vertical stripes, each of one random grey level (a dataset: only
    `sample_batch` is needed)."""

    def __init__(self, units: int):
        self.units = units

    def sample_batch(self, n, generator, device=None):
        levels = torch.rand(n, self.units, generator=generator) * 2 - 1
        return _paint(levels), None


def _paint(values: torch.Tensor) -> torch.Tensor:
    """(B, U) values -> (B, 1, S, S): value u fills stripe u."""
    return values.repeat_interleave(SIZE // values.shape[1], 1)[:, None, None, :].expand(-1, 1, SIZE, SIZE)


class StripeDecoder(nn.Module):
    """Code unit u paints stripe u (Bernoulli logits 3 z_u): each unit its own region."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return 3.0 * _paint(z).contiguous()


class StripeVAE(GaussianVAE):
    """A GaussianVAE whose code is each stripe's grey level and whose decoder paints it back."""

    def __init__(self, units: int):
        super().__init__(VAEConfig(num_latents=units), 1, SIZE)
        self.decoder = StripeDecoder()
        self.units = units

    def representation(self, images: torch.Tensor) -> torch.Tensor:
        return images[:, 0].mean(1).reshape(images.shape[0], self.units, -1).mean(2)


def _tiny_diffae():
    """A tiny untrained Diff-AE whose zero-initialised layers get small weights, so that
    its output depends on the code (as a trained one's does) and gradients can flow."""
    from fdae.data import get_dataset
    from fdae.methods import build_method

    cfg = tiny_cfg("data.image_size=32")
    torch.manual_seed(0)
    model = build_method(cfg, 3, SIZE)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1 and float(p.abs().max()) == 0:
                p.normal_(0, 0.02)
    return model.eval(), get_dataset(cfg.data.name, image_size=SIZE)


# ---------------------------------------------------------------------------- (a) frozen
@pytest.mark.parametrize("kind", ["diffae", "vae"])
def test_no_gradient_reaches_the_frozen_method_while_the_navigator_gets_one(kind):
    if kind == "diffae":
        method, dataset = _tiny_diffae()
    else:
        torch.manual_seed(0)
        method, dataset = GaussianVAE(VAEConfig(num_latents=6), 1, SIZE), Stripes(4)
    before = {k: v.clone() for k, v in method.state_dict().items()}
    flags = [p.requires_grad for p in method.parameters()]
    navigator, history = train_navigation(method, dataset, directions=3, steps=2, batch_size=4, stats_images=8)
    assert all(p.grad is None for p in method.parameters())
    assert [p.requires_grad for p in method.parameters()] == flags  # restored after training
    assert all(torch.equal(v, before[k]) for k, v in method.state_dict().items())
    assert float(navigator.directions.grad.abs().sum()) > 0
    assert all(p.grad is not None for p in navigator.reconstructor.parameters())
    assert len(history["loss"]) == len(history["accuracy"]) == len(history["shift_error"]) == 2


def test_only_diffusion_autoencoders_and_vaes_can_be_navigated():
    with pytest.raises(FdaeError, match="diffusion autoencoder .* or a VAE"):
        Renderer(Method())


# ---------------------------------------------------------------------------- (b) learning
def test_the_navigator_tells_apart_directions_that_change_distinct_regions():
    """4 code units each paint their own stripe; after 80 steps the reconstructor (width
    16) names the direction of a pair nearly always. Measured (seeds 0-4): 0.996-1.00
    over the last 8 steps, chance 0.25; the shift error falls too (0.59-0.62 of s in the
    first 8 steps, 0.23-0.28 in the last 8)."""
    method = StripeVAE(4)
    _, history = train_navigation(method, Stripes(4), directions=4, steps=80, batch_size=32, seed=0, width=16)
    assert final_accuracy(history) > 0.8
    first, last = history["shift_error"][:8], history["shift_error"][-8:]
    assert sum(last) / 8 < 0.8 * sum(first) / 8


def test_a_seed_gives_the_same_navigator():
    runs = [train_navigation(StripeVAE(4), Stripes(4), directions=3, steps=3, batch_size=8, seed=5)
            for _ in range(2)]
    assert runs[0][1] == runs[1][1]
    for (k, a), b in zip(runs[0][0].state_dict().items(), runs[1][0].state_dict().values()):
        assert torch.equal(a, b), k
    other = train_navigation(StripeVAE(4), Stripes(4), directions=3, steps=3, batch_size=8, seed=6)
    assert not torch.equal(other[0].directions, runs[0][0].directions)


def test_axes_move_codes_along_the_unit_directions_around_the_mean():
    navigator = Navigator(code_dim=5, directions=3, channels=1, shift=2.0)
    codes = torch.randn(50, 5)
    axes = navigator.axes(codes, values=5)
    assert [a.label for a in axes] == ["dir 1", "dir 2", "dir 3"]
    for axis in axes:
        assert float(axis.direction.norm()) == pytest.approx(1.0, rel=1e-5)
        centre = float(codes.mean(0) @ axis.direction)
        assert axis.values.tolist() == pytest.approx([centre - 2, centre - 1, centre, centre + 1, centre + 2],
                                                     abs=1e-5)


# ---------------------------------------------------------------------------- (c) save / load
def test_a_saved_navigator_loads_identically_and_a_damaged_file_is_named(tmp_path):
    assert load_navigation(tmp_path) is None
    navigator, _ = train_navigation(StripeVAE(4), Stripes(4), directions=3, steps=2, batch_size=4)
    path = save_navigation(tmp_path, navigator, {"accuracy": 0.5, "run_step": 7})
    assert path == navigation_path(tmp_path) and not list(tmp_path.glob(".*tmp*"))
    loaded = load_navigation(tmp_path)
    assert loaded.spec == navigator.spec
    assert loaded.meta["accuracy"] == 0.5 and loaded.meta["config"]["directions"] == 3
    state = navigator.state_dict()
    assert set(loaded.state_dict()) == set(state)
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, state[key]), key

    raw = path.read_bytes()
    path.write_bytes(raw[:len(raw) // 2])  # truncated
    with pytest.raises(FdaeError, match=r"fdae navigate"):
        load_navigation(tmp_path)
    path.write_bytes(b"not a navigation file at all")
    with pytest.raises(FdaeError, match=r"corrupt.*fdae navigate"):
        load_navigation(tmp_path)
    torch.save({"format": "fdae-navigation", "version": 1, "spec": {}, "state": {}, "meta": {},
                "integrity": "0" * 64}, path)  # well-formed, but its checksum does not match
    with pytest.raises(FdaeError, match=r"checksum.*fdae navigate"):
        load_navigation(tmp_path)


# ---------------------------------------------------------------------------- (d) command line
def test_navigate_then_viz_draw_the_directions_of_a_trained_run(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--config", str(DIFFAE_TINY), *QUIET, "data.image_size=32", "train.steps=2",
                 "train.batch_size=2", "train.ckpt_every=2", "--run-dir", str(run), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["viz", str(run), "--figures", "navigation", "--device", "cpu"]) == 2
    assert f"fdae navigate {run}" in capsys.readouterr().err

    assert main(["navigate", str(run), "--directions", "2", "--steps", "2", "--batch-size", "2",
                 "--sample-steps", "1", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "direction accuracy" in out and "chance 0.500" in out
    figure = run / "figures" / "navigation.png"
    assert (run / "navigation.pt").is_file() and figure.stat().st_size > 0
    assert str(run / "navigation.pt") in out and str(figure) in out
    from PIL import Image

    assert Image.open(figure).height > 2 * 2 * SIZE * 4  # 2 images x 2 directions, 32 px cells enlarged 4x
    figure.unlink()

    assert main(["viz", str(run), "--n", "1", "--steps", "1", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert figure.stat().st_size > 0 and str(figure) in out
    assert (run / "figures" / "traversals.png").is_file()

    only = tmp_path / "only"
    assert main(["viz", str(run), "--figures", "navigation", "--n", "1", "--steps", "1", "--device", "cpu",
                 "--out", str(only)]) == 0
    assert sorted(p.name for p in only.iterdir()) == ["navigation.png"]
    assert main(["viz", str(run), "--figures", "bogus", "--device", "cpu", "--out", str(only)]) == 2
    assert "choose among" in capsys.readouterr().err
