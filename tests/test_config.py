"""Config: YAML presets, key=value overrides, validation messages, resolved copy."""

from __future__ import annotations

import pytest

from fdae.config import Config, config_from_dict, list_presets, load_config, preset_path, save_config, to_dict
from fdae.errors import FdaeError

DIFFAE_TINY = preset_path("diffae-tiny")


@pytest.mark.parametrize("name", list_presets())
def test_every_preset_loads_and_round_trips(name, tmp_path):
    cfg = load_config(name)
    save_config(cfg, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == cfg
    assert config_from_dict(to_dict(cfg)) == cfg


def test_overrides_apply_with_types():
    cfg = load_config(DIFFAE_TINY, ["train.steps=12", "optim.lr=2e-4", "train.ema_decay=null",
                                    "unet.channel_mult=[1,2]", "train.compile=true"])
    assert cfg.train.steps == 12 and cfg.optim.lr == 2e-4 and cfg.train.ema_decay is None
    assert cfg.unet.channel_mult == [1, 2] and cfg.train.compile is True


@pytest.mark.parametrize("override, words", [
    ("train.stepz=3", ["train.stepz", "steps"]),
    ("trainn.steps=3", ["trainn", "train"]),
    ("train.precision=fp16", ["train.precision", "bf16"]),
    ("optim.name=sgd", ["optim.name", "radam"]),
    ("train.steps=abc", ["train.steps", "int"]),
    ("train.steps=0", ["train.steps", "> 0"]),
    ("train.log_every=0", ["train.log_every", ">= 1"]),
    ("train.grad_accum=0", ["train.grad_accum"]),
    ("train.ema_decay=1.5", ["train.ema_decay"]),
    ("optim.grad_clip=-1", ["optim.grad_clip"]),
    ("optim.betas=[0.9]", ["optim.betas"]),
    ("train.dist_backend=mpi", ["train.dist_backend", "gloo"]),
    ("train.batch_size=7", ["train.batch_size", "grad_accum"]),
    ("train", ["key=value"]),
    ("train=3", ["section"]),
])
def test_bad_key_or_value_is_named(override, words):
    extra = ["train.grad_accum=2"] if override == "train.batch_size=7" else []
    with pytest.raises(FdaeError) as err:
        load_config(DIFFAE_TINY, extra + [override])
    for w in words:
        assert w in str(err.value)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(FdaeError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(FdaeError, match="not valid YAML"):
        load_config(bad)
    bad.write_text("- a\n- b\n")
    with pytest.raises(FdaeError, match="mapping"):
        load_config(bad)


def test_defaults_are_the_official_recipe():
    cfg = Config()
    assert cfg.optim.name == "radam" and cfg.optim.lr == 1e-4 and cfg.optim.weight_decay == 0.0
    assert cfg.train.batch_size == 32 and cfg.train.grad_accum == 1 and cfg.train.precision == "auto"
