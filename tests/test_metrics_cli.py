"""`fdae eval` and the reference representations on the procedural Shapes3D look-alike:
the oracle scores near the maximum, random codes near zero."""

import argparse
import json
from pathlib import Path
import sys
import types

import numpy as np
import pytest
import torch

from fdae.commands import eval as eval_cmd
from fdae.errors import FdaeError
from fdae.metrics import evaluate

SMALL = dict(num_train=150, num_test=80, num_votes_train=30, num_votes_eval=20, vote_batch_size=10)


@pytest.fixture(scope="module")
def synth():
    data = pytest.importorskip("fdae.data")
    return data.get_dataset("shapes3d-synth")


def parser():
    p = argparse.ArgumentParser(prog="fdae")
    sub = p.add_subparsers(dest="command")
    eval_cmd.register(sub)
    return p


def test_cli_oracle_scores_near_one_with_json_table_and_heatmap(synth, tmp_path, capsys):
    out, png = tmp_path / "results.json", tmp_path / "plots" / "importance.png"
    args = parser().parse_args([
        "eval", "oracle", "--num-train", "400", "--num-test", "100", "--votes-train", "100", "--votes-eval", "40",
        "--vote-batch-size", "8", "--seed", "1", "--device", "cpu", "--out", str(out), "--plot", str(png), "--quiet",
    ])
    assert args.func(args) == 0
    text = capsys.readouterr().out
    assert "dci.disentanglement" in text and "mig.mig" in text and "protocol dlib" in text
    res = json.loads(out.read_text())
    assert res["dataset"]["name"] == "shapes3d-synth" and res["dataset"]["procedural"] is True
    assert res["protocol"] == "dlib" and res["settings"]["seed"] == 1 and res["settings"]["num_train"] == 400
    assert res["settings"]["factor_vae"] == {"batch_size": 8, "num_variance_estimate": 100, "num_train": 100,
                                             "num_eval": 40, "prune_threshold": 0.05}
    assert res["representation"]["spec"] == "oracle"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    o = res["metrics"]
    assert np.asarray(o["dci"]["importance_matrix"]).shape == (6, 6)
    assert o["dci"]["disentanglement"] > 0.95 and o["dci"]["completeness"] > 0.95
    assert o["dci"]["informativeness_test"] > 0.95
    assert o["mig"]["mig"] > 0.8
    assert o["modularity"]["modularity"] > 0.95 and o["modularity"]["explicitness_test"] > 0.9
    assert o["factor_vae"]["eval_accuracy"] > 0.95 and o["factor_vae"]["num_active_dims"] == 6
    assert o["beta_vae"]["eval_accuracy"] >= 0.9


def test_random_scores_near_zero(synth):
    enc, groups, _ = eval_cmd.resolve_representation("random", synth, None)
    r = evaluate(synth, enc, groups=groups, **SMALL)["metrics"]
    assert r["dci"]["disentanglement"] < 0.1 and r["dci"]["completeness"] < 0.1
    assert r["mig"]["mig"] < 0.05
    assert r["sap"]["sap"] < 0.05
    assert r["factor_vae"]["eval_accuracy"] < 0.4  # chance is 1/6
    assert r["beta_vae"]["eval_accuracy"] < 0.4


def test_cli_paper_protocol(synth, tmp_path, capsys):
    out = tmp_path / "paper.json"
    args = parser().parse_args(["eval", "random", "--protocol", "paper", "--metrics", "mig", "--num-train", "100",
                                "--device", "cpu", "--out", str(out), "--quiet"])
    assert args.func(args) == 0
    res = json.loads(out.read_text())
    assert res["protocol"] == "paper" and res["groups"] == [[f"random{i}", 2] for i in range(5)]
    assert res["settings"]["paper"]["dims_per_group"] == 36 // 5 and res["settings"]["paper"]["reduced_dims"] == [2] * 5
    assert res["metrics"]["mig"]["mig"] < 0.1
    # --plot needs DCI
    args = parser().parse_args(["eval", "random", "--metrics", "mig", "--num-train", "30", "--device", "cpu",
                                "--plot", str(tmp_path / "x.png"), "--quiet"])
    with pytest.raises(FdaeError, match="include dci"):
        args.func(args)


def test_resolve_representation_errors_and_run_dir_hook(synth, tmp_path, monkeypatch):
    with pytest.raises(FdaeError, match="unknown representation"):
        eval_cmd.resolve_representation("no-such-thing", synth, None)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    monkeypatch.setitem(sys.modules, "fdae.train.checkpoint", None)  # module absent
    with pytest.raises(FdaeError, match="checkpoint"):
        eval_cmd.resolve_representation(str(run_dir), synth, None)

    class TinyModel(torch.nn.Module):
        groups = [("content0", 2), ("mask0", 2)]

        def encode(self, images):
            return images.mean(dim=(2, 3)).repeat(1, 2)[:, :4]

    fake = types.ModuleType("fdae.train.checkpoint")
    fake.load_run = lambda path, device=None, dataset=None: types.SimpleNamespace(
        method=TinyModel(), dataset=dataset if dataset is not None else synth, run_dir=path, step=5, used_ema=False)
    monkeypatch.setitem(sys.modules, "fdae.train.checkpoint", fake)
    encode, groups, desc = eval_cmd.resolve_representation(str(run_dir), None, torch.device("cpu"))
    assert groups == [("content0", 2), ("mask0", 2)] and "TinyModel" in desc and "step 5" in desc
    assert encode.dataset is synth  # the run's own dataset when none is named
    res = evaluate(synth, encode, metrics="mig", protocol="paper", groups=groups, num_train=60)
    # the hook's encode is the run's model: the same numbers as the model's own encode
    direct = evaluate(synth, TinyModel().encode, metrics="mig", protocol="paper", groups=groups, num_train=60)
    assert res["code_dim"] == 4 and res["metrics"]["mig"]["mig"] == direct["metrics"]["mig"]["mig"]
    np.testing.assert_array_equal(res["metrics"]["mig"]["mutual_information"],
                                  direct["metrics"]["mig"]["mutual_information"])
    assert res["settings"]["paper"]["reduced_dims"] == [2, 2]


def test_cli_main_dispatch_when_all_commands_exist(tmp_path, capsys):
    try:
        from fdae.cli import build_parser

        build_parser()
    except ImportError:
        pytest.skip("some fdae sub-commands are not written yet")
    from fdae.cli import main

    assert main(["eval", "nonsense", "--device", "cpu", "--quiet"]) == 2
    assert "unknown representation" in capsys.readouterr().err


def test_cli_paper_protocol_gives_the_eg_ablation_18_dims(synth, tmp_path, monkeypatch):
    """`fdae eval RUN_DIR --protocol paper` on an E+G run (N = 1, no masks): the official
    36 // (2N) = 18 PCA dimensions of its one group, not 36."""
    from fdae.config import load_config
    from fdae.methods import build_method
    from fdae.methods.ablations import ablation_overrides

    torch.manual_seed(0)
    model = build_method(load_config(None, ["unet.preset=tiny", "method.encoder_width=8",
                                            *ablation_overrides("eg")])).eval()
    fake = types.ModuleType("fdae.train.checkpoint")
    fake.load_run = lambda path, device=None, dataset=None: types.SimpleNamespace(
        method=model, dataset=synth, run_dir=path, step=2, used_ema=False)
    fake.resolve_checkpoint = lambda spec: (Path(spec), Path(spec))
    fake.is_run_dir = lambda run_dir: False  # no config.yaml: the reference settings and the flags
    fake.run_config = None  # never called without a config.yaml
    monkeypatch.setitem(sys.modules, "fdae.train.checkpoint", fake)
    (tmp_path / "run").mkdir()
    out = tmp_path / "eg.json"
    args = parser().parse_args(["eval", str(tmp_path / "run"), "--protocol", "paper", "--metrics", "factor_vae",
                                "--num-train", "40", "--num-test", "20", "--vote-batch-size", "8", "--device", "cpu",
                                "--out", str(out), "--quiet"])
    assert args.func(args) == 0
    res = json.loads(out.read_text())
    assert res["groups"] == [["content_0", 80]]
    assert res["settings"]["paper"]["reduced_dims"] == [18]
    assert res["settings"]["paper"]["dims_rule"] == "36 // (2 x 1 concepts)"


def test_cli_fast_dci_is_named_in_the_results(synth, tmp_path, capsys):
    out = tmp_path / "fast.json"
    args = parser().parse_args(["eval", "oracle", "--metrics", "dci", "--dci", "fast", "--num-train", "300",
                                "--num-test", "100", "--device", "cpu", "--out", str(out), "--quiet"])
    assert args.func(args) == 0
    res = json.loads(out.read_text())
    assert res["metrics"]["dci"]["mode"] == "fast" and res["settings"]["dci_gbt"]["mode"] == "fast"
    assert res["metrics"]["dci"]["disentanglement"] > 0.9  # the oracle: one code per factor
    default = parser().parse_args(["eval", "oracle"])
    assert default.dci == "exact"
