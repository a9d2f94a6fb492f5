"""The method interface: per-method config sections, extra optimizers in the same step,
exact resume for every method, old runs still load, and the commands end to end for a
VAE (train, eval, viz with traversals)."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from fdae.cli import main
from fdae.config import METHODS, config_from_dict, load_config, save_config, to_dict
from fdae.errors import FdaeError
from fdae.train import checkpoint as ckpt_io
from fdae.train.checkpoint import list_checkpoints, load_run
from fdae.train.loop import initial_method, train

from _train_helpers import interrupt_at

# 32 px dSprites look-alike, small batches: seconds per run on a CPU.
QUICK = ["data.image_size=32", "train.batch_size=8", "train.log_every=1", "train.ckpt_every=0",
         "train.image_every=0", "train.device=cpu"]


def _cfg(method="factor-vae", *extra):
    return load_config(f"{method}-dsprites-synth", [*QUICK, *extra])


# ---------------------------------------------------------------------------- config
def test_a_field_of_another_method_is_refused_by_name():
    with pytest.raises(FdaeError) as err:
        load_config("beta-vae-dsprites-synth", ["method.num_concepts=3"])
    msg = str(err.value)
    assert "method.num_concepts" in msg and "fdae" in msg and "beta-vae" in msg and "beta" in msg
    with pytest.raises(FdaeError, match="no method has it"):
        load_config("shapes3d-tiny", ["method.bogus=1"])
    with pytest.raises(FdaeError, match="choose one of fdae, diffae, encdiff, ddpm, disdiff, cldis, beta-vae"):
        load_config(None, ["method.name=vae"])


def test_a_section_the_method_does_not_read_is_refused():
    with pytest.raises(FdaeError) as err:
        load_config("beta-vae-dsprites-synth", ["unet.channels=32"])
    assert "unet.channels" in str(err.value) and "U-Net" in str(err.value)
    with pytest.raises(FdaeError, match="edm.p_mean"):
        load_config("factor-vae-shapes3d-synth", ["edm.p_mean=0"])


def test_each_method_validates_its_own_fields():
    for override, key in [("method.beta=-1", "method.beta"), ("method.num_latents=0", "method.num_latents")]:
        with pytest.raises(FdaeError, match=key):
            load_config("beta-vae-dsprites-synth", [override])
    with pytest.raises(FdaeError, match="method.discriminator_betas"):
        load_config("factor-vae-dsprites-synth", ["method.discriminator_betas=[0.5]"])
    with pytest.raises(FdaeError, match="method.iteration_threshold"):
        load_config("annealed-vae-dsprites-synth", ["method.iteration_threshold=0"])


def test_switching_method_in_overrides_starts_from_its_defaults_and_saves_only_its_sections(tmp_path):
    cfg = load_config(None, ["method.name=dip-vae-ii", "method.lambda_od=5"])
    assert type(cfg.method).__name__ == "DIPVAEIIConfig" and cfg.method.lambda_d_factor == 1.0
    data = to_dict(cfg)
    assert "unet" not in data and "edm" not in data and data["method"]["lambda_od"] == 5
    save_config(cfg, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == cfg == config_from_dict(data)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_builds_and_takes_a_step(name):
    extra = ["unet.preset=tiny", "unet.channels=16", "unet.channel_mult=[1,1]", "unet.attn_resolutions=[]",
             "method.encoder_width=8"] if name in ("fdae", "diffae", "cldis") else []
    if name == "fdae":
        extra += ["method.num_concepts=2", "method.content_dim=4", "method.mask_dim=4", "method.adjust_dim=4",
                  "method.mask_decoder_width=12"]
    if name in ("ddpm", "disdiff"):  # DisDiff's two stages: a DDPM, and DisDiff on it
        extra += ["unet.channels=16", "unet.channel_mult=[1,2]", "unet.attn_resolutions=[]"]
    from fdae.methods import build_method

    if name == "disdiff":  # stage 2 is built on a stage-1 model (here an untrained one)
        from fdae.methods.disdiff import DisDiff

        prior = build_method(load_config(None, ["method.name=ddpm", *extra]), 1, 32)
        cfg = load_config(None, ["method.name=disdiff", "method.pretrained=stage1", "method.encoder_width=8",
                                 "method.unit_dim=4", "method.part_dim=8"])
        model = DisDiff(cfg.method, prior, 1, 32)
    else:
        model = build_method(load_config(None, [f"method.name={name}", *extra]), 1, 32)
    images = torch.rand(4, 1, 32, 32) * 2 - 1
    terms = model.loss(images, torch.Generator().manual_seed(0))
    terms["loss"].backward()
    assert torch.isfinite(terms["loss"])
    if name == "ddpm":  # no representation: it draws samples
        assert model.figures == ("samples",)
        with pytest.raises(FdaeError, match="has no representation"):
            model.encode(images)
        return
    assert model.encode(images).shape == (4, sum(d for _, d in model.groups))
    assert {"reconstructions", "traversals"} <= set(model.figures)


# ---------------------------------------------------------------------------- legacy runs
LEGACY_UNION = {"num_concepts": 6, "content_dim": 80, "mask_dim": 80, "adjust_dim": 80, "use_masks": True,
                "content_decorrelation_weight": 2.5e-5, "mask_entropy_weight": 1e-4, "encoder_width": 64,
                "mask_decoder_width": 384, "latent_dim": 512}


@pytest.mark.parametrize("preset", ["diffae-tiny", "shapes3d-tiny"])
def test_runs_saved_with_the_single_method_record_still_load(tmp_path, preset):
    """Runs written before per-method sections held every method's fields in `method`
    (the flat record LEGACY_UNION shows); their checkpoints and config.yaml still load."""
    cfg = load_config(preset, ["train.steps=1", "train.batch_size=2", "train.image_every=0", "train.device=cpu",
                               "data.image_size=32"])
    run = tmp_path / "run"
    train(cfg, run, progress=False, tensorboard=False)
    path = ckpt_io.latest_checkpoint(run)
    data = ckpt_io.load_checkpoint(path, map_location="cpu")
    legacy = dict(data["config"])
    legacy["method"] = {**LEGACY_UNION, **legacy["method"]}
    data["config"] = legacy
    ckpt_io.save_checkpoint(data, path)
    (run / "config.yaml").write_text(yaml.safe_dump(legacy, sort_keys=False))
    loaded = load_run(run)
    assert loaded.cfg == cfg and loaded.step == 1
    assert ckpt_io.run_config(run) == cfg
    assert load_config(run / "config.yaml") == cfg  # a run's own config.yaml given to --config
    assert main(["train", "--resume", str(run), "train.steps=2", "--no-progress"]) == 0


def test_a_run_is_not_resumed_as_another_method(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--config", "beta-vae-dsprites-synth", *QUICK, "train.steps=1", "--run-dir", str(run),
                 "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "method.name=factor-vae", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "run of method beta-vae" in err and "factor-vae" in err and err.count("\n") == 1


# ---------------------------------------------------------------------------- extra optimizers
def test_factor_vae_updates_the_vae_and_its_discriminator_in_the_same_step(tmp_path):
    cfg = _cfg("factor-vae", "train.steps=1")
    train(cfg, tmp_path / "run", progress=False, tensorboard=False)
    data = torch.load(ckpt_io.latest_checkpoint(tmp_path / "run"), map_location="cpu", weights_only=True)
    main_state, disc_state = data["optimizer"], data["extra_optimizers"]["discriminator"]
    from fdae.data import get_dataset

    start = initial_method(cfg, get_dataset(cfg.data.name, image_size=32))
    vae_params = sum(1 for n, _ in start.named_parameters() if not n.startswith("discriminator."))
    disc_params = sum(1 for _ in start.discriminator.parameters())
    assert len(main_state["state"]) == vae_params and len(disc_state["state"]) == disc_params
    assert all(float(s["step"]) == 1 for s in [*main_state["state"].values(), *disc_state["state"].values()])
    assert disc_state["param_groups"][0]["betas"] == (0.5, 0.9) or disc_state["param_groups"][0]["betas"] == [0.5, 0.9]
    after = data["model"]
    for name, p in start.state_dict().items():  # both parts moved in the one step
        if name.endswith("weight"):
            assert not torch.equal(after[name], p), name


@pytest.mark.parametrize("method", ["factor-vae", "annealed-vae"])
def test_an_interrupted_and_resumed_run_equals_an_uninterrupted_one(tmp_path, monkeypatch, method):
    extra = ["train.steps=6"] + (["method.iteration_threshold=4"] if method == "annealed-vae" else [])
    full = train(_cfg(method, *extra), tmp_path / "full", progress=False, tensorboard=False)
    interrupt_at(monkeypatch, 3)
    part = train(_cfg(method, *extra), tmp_path / "part", progress=False, tensorboard=False)
    assert part.reason == "signal" and [s for s, _ in list_checkpoints(tmp_path / "part")] == [3]
    monkeypatch.undo()
    rest = train(_cfg(method, *extra), tmp_path / "part", resume=True, progress=False, tensorboard=False)
    assert rest.step == full.step == 6
    a = torch.load(full.checkpoint, map_location="cpu", weights_only=True)
    b = torch.load(rest.checkpoint, map_location="cpu", weights_only=True)
    for name, value in a["model"].items():
        assert torch.equal(value, b["model"][name]), name
    for key in ("optimizer", "extra_optimizers"):
        assert json.dumps(str(a[key])) == json.dumps(str(b[key]))
    logs = [[r["loss"] for r in map(json.loads, (d / "metrics.jsonl").read_text().splitlines())]
            for d in (tmp_path / "full", tmp_path / "part")]
    assert logs[0] == logs[1]


# ---------------------------------------------------------------------------- commands
def test_a_vae_trains_evaluates_and_draws_traversals_from_the_command_line(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--config", "beta-vae-dsprites-synth", *QUICK, "train.steps=3", "--run-dir", str(run),
                 "--no-progress"]) == 0
    assert main(["eval", str(run), "--protocol", "dlib", "--metrics", "factor_vae,mig", "--num-train", "200",
                 "--num-test", "100", "--votes-train", "50", "--votes-eval", "50", "--out",
                 str(tmp_path / "eval.json")]) == 0
    result = json.loads((tmp_path / "eval.json").read_text())
    assert {"factor_vae", "mig"} <= set(result["metrics"])
    assert main(["viz", str(run), "--out", str(tmp_path / "fig"), "--n", "2"]) == 0
    from PIL import Image

    written = sorted(p.name for p in (tmp_path / "fig").iterdir())
    assert written == ["reconstructions.png", "traversals.png"]
    grid = Image.open(tmp_path / "fig" / "traversals.png")
    # 2 images x 10 latents, 8 columns (input + 7 values) of 32 px cells enlarged 4x.
    assert grid.height > 20 * 32 * 4 and grid.width > 8 * 32 * 4


def test_traversals_of_a_diffusion_method_move_one_code_group_at_a_time():
    from fdae.methods import build_method
    from fdae.viz.figures import traversal_figure

    cfg = load_config("shapes3d-tiny", ["method.num_concepts=2", "method.content_dim=4", "method.mask_dim=4",
                                        "method.adjust_dim=4", "method.encoder_width=8",
                                        "method.mask_decoder_width=12", "unet.channel_mult=[1,1]",
                                        "unet.attn_resolutions=[]"])
    model = build_method(cfg, 3, 32).eval()
    sample = torch.rand(32, 3, 32, 32) * 2 - 1
    codes = model.encode(sample)
    axes = model.traversal_axes(codes, rows=10, values=5)
    assert [a.label for a in axes] == ["content_0", "content_1", "mask_0", "mask_1"]
    for axis, (lo, hi) in zip(axes, [(0, 4), (4, 8), (8, 12), (12, 16)]):
        outside = torch.cat([axis.direction[:lo], axis.direction[hi:]])
        assert float(outside.abs().max()) == 0 and float(axis.direction.norm()) == pytest.approx(1.0, rel=1e-5)
        proj = codes @ axis.direction
        assert float(axis.values[0]) == pytest.approx(float(torch.quantile(proj, 0.05)), rel=1e-4, abs=1e-5)
    grid, rows, cols = traversal_figure(model, sample[:2], sample, steps=2, values=5)
    assert len(rows) == 2 * 4 and cols[0] == "input" and len(cols) == 6
    assert grid.shape[0] == 8 * (32 + 2) + 2


# ---------------------------------------------------------------------------- frozen parts
from dataclasses import dataclass  # noqa: E402

from fdae.methods.vae.beta_vae import BetaVAE, BetaVAEConfig  # noqa: E402


@dataclass
class FrozenDecoderConfig(BetaVAEConfig):
    name: str = "beta-vae-frozen-decoder"


class FrozenDecoderBetaVAE(BetaVAE):
    """A beta-VAE whose decoder is declared frozen (as DisDiff freezes its pretrained model)."""

    Config = FrozenDecoderConfig

    def frozen_modules(self):
        return [self.decoder]


def test_frozen_modules_get_no_update_and_stay_in_eval_mode(tmp_path, monkeypatch):
    monkeypatch.setitem(METHODS, "beta-vae-frozen-decoder", "test_method_interface:FrozenDecoderBetaVAE")
    cfg = _cfg("beta-vae", "method.name=beta-vae-frozen-decoder", "train.steps=2")
    from fdae.data import get_dataset

    start = initial_method(cfg, get_dataset(cfg.data.name, image_size=32))
    assert not any(p.requires_grad for p in start.decoder.parameters())
    start.train()
    assert start.training and not start.decoder.training
    train(cfg, tmp_path / "run", progress=False, tensorboard=False)
    after = load_run(tmp_path / "run").method.state_dict()
    for name, value in start.state_dict().items():
        assert torch.equal(after[name], value) == name.startswith("decoder."), name


def test_shards_are_said_and_a_wrong_dataset_is_named(tmp_path, capsys):
    run = tmp_path / "run"
    train(_cfg("factor-vae", "train.steps=1", "train.grad_accum=2"), run, progress=False, tensorboard=False)
    assert "factor-vae estimates the dimension-wise permutation" in capsys.readouterr().err
    from fdae.data import get_dataset

    with pytest.raises(FdaeError, match="1-channel images"):
        load_run(run, dataset=get_dataset("shapes3d-synth", image_size=32))


def test_vae_traversals_show_the_most_used_latents_when_rows_are_fewer():
    from fdae.methods import build_method

    model = build_method(load_config(None, ["method.name=beta-vae"]), 1, 32)
    codes = torch.randn(100, 10) * torch.arange(1, 11)  # latent 10 spreads most
    axes = model.traversal_axes(codes, rows=3, values=5)
    assert [a.label.split()[0] for a in axes] == ["z8", "z9", "z10"]
    assert all(torch.equal(a.values, torch.linspace(-2, 2, 5)) for a in axes)
