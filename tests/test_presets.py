"""The shipped presets: package data found by name from any directory, the old
`configs/NAME.yaml` path still working, and the paper presets as the official train.sh
runs them, on the dataset their names promise."""

from __future__ import annotations

from pathlib import Path

import pytest

from fdae.config import PRESET_DIR, list_presets, load_config, resolve_preset
from fdae.data import dataset_info
from fdae.errors import FdaeError

ROOT = Path(__file__).resolve().parents[1]

# name -> (dataset, N) of the official train.sh runs (REFERENCE: N = 6 Shapes3D and
# MPI3D, 2 Cars3D), and the procedural stand-in run with the same settings.
PAPER_PRESETS = {
    "shapes3d-paper": ("shapes3d", 6),
    "mpi3d-complex-paper": ("mpi3d-complex", 6),
    "cars3d-paper": ("cars3d", 2),
    "shapes3d-synth-paper": ("shapes3d-synth", 6),
}


def test_the_presets_are_package_data_and_the_repository_holds_no_stray_copy():
    assert PRESET_DIR == ROOT / "src" / "fdae" / "configs"
    assert set(PAPER_PRESETS) | {"shapes3d-tiny", "shapes3d-fast", "diffae-tiny"} <= set(list_presets())
    # A preset added under the old configs/ folder would not ship in the wheel.
    assert not list((ROOT / "configs").glob("*.y*ml"))


def test_a_name_resolves_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_preset("shapes3d-tiny") == PRESET_DIR / "shapes3d-tiny.yaml"
    assert load_config("cars3d-paper").method.num_concepts == 2


def test_the_old_configs_path_names_the_packaged_preset_unless_the_file_exists(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_preset("configs/shapes3d-fast.yaml") == PRESET_DIR / "shapes3d-fast.yaml"
    assert load_config("configs/shapes3d-tiny.yaml") == load_config("shapes3d-tiny")
    own = tmp_path / "configs" / "shapes3d-tiny.yaml"
    own.parent.mkdir()
    own.write_text("train: {steps: 7}\n")  # a user's own file of that name is what they mean
    assert resolve_preset("configs/shapes3d-tiny.yaml") == Path("configs/shapes3d-tiny.yaml")
    assert load_config("configs/shapes3d-tiny.yaml").train.steps == 7


@pytest.mark.parametrize("given", ["shapes3d-tinyy", "configs/nope.yaml", "elsewhere/shapes3d-tiny.yaml"])
def test_an_unknown_preset_or_missing_file_lists_the_presets(given, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FdaeError) as err:
        load_config(given)
    assert given in str(err.value)
    for name in list_presets():
        assert name in str(err.value)


@pytest.mark.parametrize("name", list_presets())
def test_every_preset_validates_and_trains_on_the_kind_of_data_its_name_says(name):
    cfg = load_config(name)  # validated
    procedural = dataset_info(cfg.data.name).procedural
    if "synth" in name:
        assert procedural, (name, cfg.data.name)
    if name.endswith("-paper") and "synth" not in name:
        assert not procedural and cfg.data.name == name[: -len("-paper")], (name, cfg.data.name)


@pytest.mark.parametrize("name", sorted(PAPER_PRESETS))
def test_paper_presets_have_the_official_settings(name):
    dataset, n = PAPER_PRESETS[name]
    cfg = load_config(name)
    assert cfg.data.name == dataset and dataset_info(dataset).procedural == ("synth" in name)
    m = cfg.method
    assert (m.name, m.num_concepts, m.use_masks) == ("fdae", n, True)
    assert (m.content_dim, m.mask_dim, m.adjust_dim, m.encoder_width, m.mask_decoder_width) == (80, 80, 80, 64, 384)
    assert (m.content_decorrelation_weight, m.mask_entropy_weight) == (2.5e-5, 1e-4)
    assert cfg.unet.preset == "paper" and all(
        getattr(cfg.unet, k) is None for k in ("channels", "channel_mult", "num_blocks", "attn_resolutions"))
    o = cfg.optim
    assert (o.name, o.lr, o.weight_decay, o.warmup_steps, o.grad_clip) == ("radam", 1e-4, 0.0, 0, None)
    t = cfg.train
    assert (t.batch_size, t.steps, t.ema_decay, t.grad_accum) == (32, 100_000, None, 1)
    assert cfg.data.image_size is None and cfg.eval.protocol == "paper"
    assert (cfg.edm.sigma_data, cfg.edm.p_mean, cfg.edm.p_std) == (0.5, -1.2, 1.2)
