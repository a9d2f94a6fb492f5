"""The label-free content-tracking score (fdae.metrics.content_tracking): its extreme
values on constructed representations, a hand-computed middle value, and `fdae eval
--metrics content_tracking` on a trained run and on a folder of images without labels."""

from __future__ import annotations

import json
import math

import pytest
import torch

from fdae.errors import FdaeError
from fdae.methods.base import TraversalAxis
from fdae.metrics.content_tracking import content_tracking, move_codes, tracking_from_maps


def quadrant_maps(units: int = 4, images: int = 3, side: int = 8) -> torch.Tensor:
    maps = torch.zeros(units, images, side, side)
    h = side // 2
    for k in range(units):
        r, c = divmod(k, 2)
        maps[k, :, r * h:(r + 1) * h, c * h:(c + 1) * h] = 1.0 + k  # any magnitude: maps are normalised
    return maps


def test_units_that_own_disjoint_regions_score_one():
    r = tracking_from_maps(quadrant_maps())
    assert r["tracking"] == pytest.approx(1.0) and r["active_units"] == 4
    assert r["consistency"] == pytest.approx(1.0)


def test_units_that_change_everything_alike_score_zero():
    maps = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0)).expand(5, -1, -1, -1) * 2.0
    r = tracking_from_maps(maps.contiguous())
    assert r["tracking"] == pytest.approx(0.0, abs=1e-9)


def test_half_overlap_by_hand_and_inactive_units():
    """Unit A changes pixels {0, 1}, unit B {1, 2}: H(unit | pixel) = 0.5 log 2, so the
    score is 1 - 0.5 = 0.5. A third unit changing 1% as much is inactive and ignored."""
    maps = torch.zeros(3, 1, 1, 3)
    maps[0, 0, 0, :2] = 1.0
    maps[1, 0, 0, 1:] = 1.0
    maps[2, 0, 0, :] = 0.01 * 2 / 3
    r = tracking_from_maps(maps)
    assert r["active_units"] == 2 and r["active"] == [True, True, False]
    assert r["tracking"] == pytest.approx(0.5, abs=1e-9)


def test_fewer_than_two_active_units_track_nothing():
    maps = torch.zeros(3, 2, 4, 4)
    maps[1] = 1.0
    r = tracking_from_maps(maps)
    assert r["active_units"] == 1 and r["tracking"] == 0.0
    assert tracking_from_maps(torch.zeros(2, 2, 4, 4))["tracking"] == 0.0


class Painter:
    """A decoder of 4-unit codes to 8x8 images. "local": unit k paints its value into
    quadrant k. "global": every unit moves every pixel by the same amount (a random sign
    per unit and pixel). "rotated": the local painter after a fixed rotation of the
    codes, so every unit moves every quadrant, each by a different amount."""

    def __init__(self, mode: str):
        self.mode = mode
        g = torch.Generator().manual_seed(1)
        self.signs = torch.randint(0, 2, (4, 1, 8, 8), generator=g).float() * 2 - 1
        self.rotation = torch.linalg.qr(torch.randn(4, 4, generator=g))[0]

    def parameters(self):
        return iter([torch.zeros(1)])

    def encode(self, images):
        return images[:, 0, :2, :2].reshape(-1, 4)  # four numbers that vary across images

    def decode_codes(self, codes, shape, steps=None, noise=None, generator=None):
        if self.mode == "global":
            return (codes[:, :, None, None, None] * self.signs[None]).sum(1)
        if self.mode == "rotated":
            codes = codes @ self.rotation
        quads = codes[:, :, None, None].expand(-1, -1, 4, 4)  # (B, 4, 4, 4)
        top = torch.cat([quads[:, 0], quads[:, 1]], 2)
        bottom = torch.cat([quads[:, 2], quads[:, 3]], 2)
        return torch.cat([top, bottom], 1)[:, None]

    def traversal_axes(self, codes, rows=10, values=7):
        return [TraversalAxis(f"u{k}", torch.eye(4)[k], torch.linspace(-1.0, 1.0, values)) for k in range(4)]


class Images:
    def sample_batch(self, n, generator, device=None):
        return torch.rand(n, 1, 8, 8, generator=generator) * 2 - 1, None


def test_constructed_representations_reach_the_extremes():
    local = content_tracking(Painter("local"), Images(), num_images=6)
    global_ = content_tracking(Painter("global"), Images(), num_images=6)
    rotated = content_tracking(Painter("rotated"), Images(), num_images=6)
    assert local["tracking"] == pytest.approx(1.0) and local["active_units"] == 4
    assert local["axes"] == ["u0", "u1", "u2", "u3"]
    assert global_["tracking"] == pytest.approx(0.0, abs=1e-9)
    assert 0.05 < rotated["tracking"] < 0.6  # entangled: in between, far from 1


def test_move_codes_sets_the_projection():
    codes = torch.randn(5, 3)
    d = torch.tensor([0.6, 0.8, 0.0])
    assert torch.allclose(move_codes(codes, d, 2.5) @ d, torch.full((5,), 2.5), atol=1e-6)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from fdae.config import load_config
    from fdae.train.loop import train

    run = tmp_path_factory.mktemp("ct") / "run"
    cfg = load_config("cldis-shapes3d-synth", [
        "data.image_size=16", "method.encoder_width=8", "method.distill_dims=3", "method.free_dims=2",
        "unet.channels=16", "unet.channel_mult=[1,1]", "train.batch_size=4", "train.steps=2", "train.device=cpu",
        "train.image_every=0", "train.eval_every=0", "train.ckpt_every=0"])
    train(cfg, run, progress=False, tensorboard=False)
    return run


def test_eval_command_on_a_run_and_on_an_unlabelled_folder(tiny_run, tmp_path, monkeypatch, capsys):
    from _folder_images import make_folder

    from fdae.cli import main

    monkeypatch.setenv("FDAE_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "ct.json"
    assert main(["eval", str(tiny_run), "--metrics", "content_tracking", "--ct-images", "4", "--ct-steps", "2",
                 "--out", str(out), "--quiet"]) == 0
    r = json.loads(out.read_text())["metrics"]["content_tracking"]
    assert 0.0 <= r["tracking"] <= 1.0 and r["num_images"] == 4 and len(r["axes"]) == 4  # z1..z3, free
    assert "tracking" in capsys.readouterr().out
    make_folder(tmp_path / "plain", n=10, corrupt=0, labels=False)
    assert main(["eval", str(tiny_run), "--metrics", "content_tracking", "--dataset", f"folder:{tmp_path / 'plain'}",
                 "--ct-images", "4", "--ct-steps", "2", "--quiet"]) == 0
    saved = list((tiny_run / "eval_results").glob("*content_tracking*.json"))
    assert saved and json.loads(saved[0].read_text())["dataset"]["name"].startswith("folder")


def test_eval_command_refuses_what_cannot_be_tracked(tiny_run, capsys):
    from fdae.cli import main

    assert main(["eval", "oracle", "--metrics", "content_tracking"]) != 0
    assert "needs a trained run directory" in capsys.readouterr().err
    assert main(["eval", str(tiny_run), "--metrics", "content_tracking", "--ct-axes", "navigation"]) != 0
    assert f"fdae navigate {tiny_run}" in capsys.readouterr().err
