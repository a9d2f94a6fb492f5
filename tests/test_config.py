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


@pytest.mark.parametrize("override, words", [
    ("seed=-1", ["'seed'", "[0, 2**32)", "seed=0"]),
    ("seed=4294967296", ["'seed'", "[0, 2**32)"]),
    ("unet.channels=0", ["unet.channels", ">= 1"]),
    ("unet.channels=-4", ["unet.channels", ">= 1"]),
    ("unet.num_blocks=0", ["unet.num_blocks"]),
    ("unet.head_channels=0", ["unet.head_channels"]),
    ("unet.channel_mult=[]", ["unet.channel_mult", "non-empty"]),
    ("unet.channel_mult=[1,0]", ["unet.channel_mult", "positive"]),
    ("unet.dropout=1.0", ["unet.dropout", "[0, 1)"]),
    ("edm.rho=0", ["edm.rho", "> 0", "edm.rho=7"]),
    ("edm.sigma_min=-1", ["edm.sigma_min", "> 0", "0.002"]),
    ("edm.sigma_max=inf", ["edm.sigma_max", "finite"]),
    ("edm.sigma_data=0", ["edm.sigma_data", "> 0"]),
    ("edm.p_mean=nan", ["edm.p_mean", "finite"]),
    ("edm.p_std=-1", ["edm.p_std", ">= 0"]),
    ("edm.sample_steps=0", ["edm.sample_steps"]),
    ("optim.lr=inf", ["optim.lr", "finite number > 0", "optim.lr=1e-4"]),
    ("optim.lr=nan", ["optim.lr", "finite"]),
    ("optim.lr=-1e-4", ["optim.lr", "> 0"]),
    ("optim.lr=0", ["optim.lr", "> 0"]),
    ("optim.weight_decay=-0.1", ["optim.weight_decay", ">= 0"]),
    ("optim.grad_clip=inf", ["optim.grad_clip", "finite"]),
    ("optim.warmup_steps=-1", ["optim.warmup_steps"]),
    ("method.num_concepts=0", ["method.num_concepts"]),
    ("method.content_dim=0", ["method.content_dim"]),
    ("method.encoder_width=0", ["method.encoder_width"]),
    ("method.mask_decoder_width=5", ["method.mask_decoder_width", ">= 6"]),
    ("method.latent_dim=0", ["method.latent_dim"]),
    ("method.mask_entropy_weight=-1", ["method.mask_entropy_weight", ">= 0"]),
    ("train.keep_last=0", ["train.keep_last"]),
    ("train.max_bad_steps=0", ["train.max_bad_steps"]),
    ("train.ckpt_every=-1", ["train.ckpt_every"]),
    ("train.image_every=-1", ["train.image_every"]),
    ("train.image_steps=0", ["train.image_steps"]),
    ("train.time_limit_min=0", ["train.time_limit_min"]),
    ("train.time_limit_min=nan", ["train.time_limit_min", "finite"]),
    ("eval.num_train=1", ["eval.num_train", ">= 2"]),
    ("eval.num_test=0", ["eval.num_test"]),
    ("eval.num_votes_train=0", ["eval.num_votes_train"]),
    ("eval.batch_size=0", ["eval.batch_size"]),
    ("eval.async_workers=-1", ["eval.async_workers"]),
    ("eval.metrics=[sap]", ["eval.metrics", "dci, factor_vae, mig"]),
    ("eval.metrics=[nonsense]", ["eval.metrics"]),
    ("name=a/b", ["'name'", "plain name"]),
    ("name=''", ["'name'"]),
    ("data.name=''", ["data.name"]),
])
def test_every_impossible_value_is_refused_with_its_range(override, words):
    with pytest.raises(FdaeError) as err:
        load_config("shapes3d-tiny", [override])
    for w in words:
        assert w in str(err.value), str(err.value)


def test_a_huge_but_finite_learning_rate_is_a_valid_config():
    """1e6 is absurd but finite: it is the non-finite guard's job (tests/test_reliability.py)."""
    assert load_config("shapes3d-tiny", ["optim.lr=1e6"]).optim.lr == 1e6


@pytest.mark.parametrize("overrides, words", [
    (["unet.channel_mult=[1,1,1,1,1,1,1,1]"], ["8 levels", "at most 7"]),
    (["unet.channels=100", "unet.head_channels=32", "unet.channel_mult=[1]"], ["attention heads"]),
])
def test_unet_shapes_that_cannot_work_are_named_before_building(overrides, words):
    from fdae.methods import build_method

    cfg = load_config("shapes3d-tiny", overrides)
    with pytest.raises(FdaeError) as err:
        build_method(cfg, 3, 64)
    for w in words:
        assert w in str(err.value)
