"""Training on a folder of images end to end on CPU: fdae train, viz, sample, eval
(--probe linear; the metrics refuse without labels), Diff-AE too, and 128 px."""

from __future__ import annotations

import json

import pytest

from _folder_images import make_folder
from _train_helpers import FDAE_SMALL, FDAE_TINY, DIFFAE_TINY
from fdae.cli import main
from fdae.train.logging import read_jsonl

FAST = ["train.device=cpu", "train.batch_size=4", "train.log_every=2", "train.ckpt_every=0",
        "train.image_steps=2", "edm.sample_steps=2"]


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    root = tmp_path_factory.mktemp("train") / "scenes"
    make_folder(root, n=200, seed=2)
    return root


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("FDAE_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "fdae-cache"))


def _train(args: list[str], capsys) -> str:
    rc = main(["train", *args, "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 0, err
    return err


def test_fdae_trains_on_a_folder_then_viz_sample_and_probe(scenes, tmp_path, capsys):
    run = tmp_path / "run"
    err = _train(["--config", str(FDAE_TINY), *FDAE_SMALL, *FAST, f"data.name=folder:{scenes}",
                  "train.steps=2", "train.image_every=2", "train.eval_every=2", "eval.protocol=dlib", "eval.metrics=[mig]",
                  "eval.num_train=60", "eval.num_test=20", "--run-dir", str(run)], capsys)
    assert f"folder:{scenes}" in err
    assert "periodic evaluation skipped" not in err  # the labels form a full grid: metrics run
    metrics = read_jsonl(run / "metrics.jsonl")
    assert metrics and metrics[-1]["step"] == 2
    assert [e["step"] for e in read_jsonl(run / "eval.jsonl")] == [2]
    assert list((run / "images").glob("reconstruction_*.png")) or list((run / "tb").glob("events.*"))

    assert main(["viz", str(run), "--n", "1", "--steps", "1", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    for name in ("reconstructions", "masks", "swap_grid", "concept_swaps_content", "concept_swaps_mask"):
        path = run / "figures" / f"{name}.png"
        assert path.stat().st_size > 0 and str(path) in out
    assert f"dataset folder:{scenes}" in out

    png = tmp_path / "recon.png"
    assert main(["sample", str(run), "--n", "1", "--steps", "1", "--device", "cpu", "--out", str(png)]) == 0
    assert png.stat().st_size > 0 and f"folder:{scenes}" in capsys.readouterr().out

    res = tmp_path / "probe.json"
    assert main(["eval", str(run), "--probe", "linear", "--pca-dims", "8", "--device", "cpu", "--quiet",
                 "--out", str(res)]) == 0
    text = capsys.readouterr().out
    assert "linear probe" in text and "content_0, content_1" in text and "\nmean " in text
    result = json.loads(res.read_text())
    assert set(result["attributes"]) == {"colour", "background", "shape", "random"}
    assert result["groups_used"] == ["content_0", "content_1"]
    accuracies = [a["accuracy"] for a in result["attributes"].values()]
    assert result["mean_accuracy"] == pytest.approx(sum(accuracies) / len(accuracies))
    # 2 steps teach little, but a dark or light background is read from any features
    assert result["attributes"]["background"]["accuracy"] > 0.8

    # without labels.csv the metrics refuse and say what they need
    labels = scenes / "labels.csv"
    labels.rename(tmp_path / "labels.csv")
    try:
        assert main(["eval", str(run), "--device", "cpu", "--quiet"]) == 2
        err = capsys.readouterr().err
        assert "has no labels" in err and "labels.csv" in err and "--probe linear" in err
        assert "Traceback" not in err
        assert main(["eval", str(run), "--probe", "linear", "--device", "cpu", "--quiet"]) == 2
        assert "needs one in the image folder" in capsys.readouterr().err
    finally:
        (tmp_path / "labels.csv").rename(labels)


def test_diffae_trains_on_an_unlabelled_folder_and_skips_periodic_evaluation(tmp_path, capsys):
    folder = tmp_path / "plain"
    make_folder(folder, n=40, seed=3, labels=False)
    run = tmp_path / "run"
    err = _train(["--config", str(DIFFAE_TINY), *FAST, f"data.name=folder:{folder}", "train.steps=2",
                  "train.image_every=0", "train.eval_every=1", "--run-dir", str(run)], capsys)
    assert err.count("periodic evaluation skipped") == 1 and "has no ground-truth factors" in err
    assert not read_jsonl(run / "eval.jsonl")
    assert main(["viz", str(run), "--n", "1", "--steps", "1", "--device", "cpu"]) == 0
    assert (run / "figures" / "reconstructions.png").exists() and not (run / "figures" / "masks.png").exists()


def test_fdae_trains_and_draws_at_128_px(scenes, tmp_path, capsys):
    run = tmp_path / "run128"
    _train(["--config", str(FDAE_TINY), *FAST, *FDAE_SMALL, f"data.name=folder:{scenes}", "data.image_size=128",
            "train.batch_size=1", "train.steps=1", "train.image_every=0", "--run-dir", str(run)], capsys)
    assert main(["viz", str(run), "--n", "1", "--steps", "1", "--device", "cpu"]) == 0
    from PIL import Image

    with Image.open(run / "figures" / "masks.png") as im:  # image, 2 masks, colour map, overlay at 128 px
        assert im.height >= 128 * 2
    # a folder dataset given to eval is read at the run's resolution
    assert main(["eval", str(run), "--dataset", f"folder:{scenes}", "--probe", "linear", "--pca-dims", "4",
                 "--device", "cpu"]) == 0
    assert "images at 128px" in capsys.readouterr().err


def test_image_size_is_for_folders_only():
    from fdae.config import load_config
    from fdae.errors import FdaeError

    with pytest.raises(FdaeError, match="image folders"):
        load_config(FDAE_TINY, ["data.image_size=128"])
    with pytest.raises(FdaeError, match="multiple of 16"):
        load_config(FDAE_TINY, ["data.name=folder:/x", "data.image_size=100"])
    assert load_config(FDAE_TINY, ["data.name=folder:/x", "data.image_size=128"]).data.image_size == 128
