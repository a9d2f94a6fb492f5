"""The linear probe: near-perfect on attributes a linear read-out sees, chance on random
labels; content groups only; fixed seeds; clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from _folder_images import make_folder
from fdae.data import get_dataset
from fdae.errors import FdaeError
from fdae.metrics.probe import content_columns, linear_probe, probe_folder


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    root = tmp_path_factory.mktemp("probe") / "scenes"
    make_folder(root, n=300, seed=1)
    with pytest.MonkeyPatch.context() as m:
        m.setenv("FDAE_CACHE_DIR", str(root.parent / "cache"))
        return get_dataset(f"folder:{root}")


def pixel_encoder(x: torch.Tensor) -> torch.Tensor:
    """Content: 8 x 8 thumbnails (two 96-dim groups); mask: 16 dims of noise (ignored)."""
    thumb = F.avg_pool2d(x, 8).flatten(1)
    return torch.cat([thumb, torch.randn(len(x), 16, generator=torch.Generator().manual_seed(len(x)))], dim=1)


GROUPS = [("content_0", 96), ("content_1", 96), ("mask_0", 8), ("mask_1", 8)]


def test_visible_attributes_near_perfect_random_labels_at_chance(labelled):
    out = probe_folder(labelled, pixel_encoder, GROUPS, pca_dims=36, test_fraction=0.25, random_state=0)
    acc = {k: v["accuracy"] for k, v in out["attributes"].items()}
    assert acc["colour"] >= 0.95 and acc["background"] >= 0.97
    assert abs(acc["random"] - 1 / 3) < 0.15  # 75 held-out images: chance +- 2.5 sigma
    assert out["groups_used"] == ["content_0", "content_1"] and out["code_dims_used"] == 192
    assert out["pca_dims"] == 36 and out["num_test"] == 75 and out["num_train"] == 225
    assert out["attributes"]["colour"]["num_test"] < 75  # greyscale images have no colour label
    assert out["attributes"]["colour"]["classes"] == ["blue", "green", "red"]
    assert out["dataset"]["num_labelled"] == 300 and out["dataset"]["unmatched_label_rows"] == 1
    mean = np.mean([v["accuracy"] for v in out["attributes"].values()])
    assert out["mean_accuracy"] == pytest.approx(mean)
    again = probe_folder(labelled, pixel_encoder, GROUPS, pca_dims=36, random_state=0)
    assert again["attributes"] == out["attributes"]  # seeds fixed: the same numbers


def test_array_probe_chance_single_class_and_groups():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, size=(600, 2))
    codes = np.concatenate([3 * np.eye(4)[y[:, 0]] + 0.05 * rng.standard_normal((600, 4)),
                            rng.standard_normal((600, 6))], axis=1)
    labels = np.concatenate([y, np.zeros((600, 1), np.int64)], axis=1)  # third: one class only
    labels[:50, 1] = -1  # unknown values are left out
    out = linear_probe(codes, labels, names=["visible", "random", "constant"], pca_dims=8)
    a = out["attributes"]
    assert a["visible"]["accuracy"] > 0.98 and abs(a["random"]["accuracy"] - 0.25) < 0.08
    assert "skipped" in a["constant"] and out["mean_accuracy"] == pytest.approx(
        (a["visible"]["accuracy"] + a["random"]["accuracy"]) / 2)
    assert a["random"]["num_train"] + a["random"]["num_test"] == 550
    assert out["groups_used"][0].startswith("(all codes")

    cols, used = content_columns([("latent", 10)], 10)
    assert list(cols) == list(range(10)) and "no content groups" in used[0]
    cols, used = content_columns([("content_0", 2), ("mask_0", 3), ("content_1", 2)], 7)
    assert list(cols) == [0, 1, 5, 6] and used == ["content_0", "content_1"]


def test_probe_errors():
    codes, labels = np.zeros((10, 3)), np.zeros((10, 1), np.int64)
    with pytest.raises(FdaeError, match="same n images"):
        linear_probe(codes, labels[:5])
    with pytest.raises(FdaeError, match="NaN"):
        linear_probe(np.full((10, 3), np.nan), labels)
    with pytest.raises(FdaeError, match="no attribute could be probed"):
        linear_probe(codes, labels)
    with pytest.raises(FdaeError, match="groups cover 5"):
        linear_probe(codes, labels, [("content_0", 5)])


def test_probe_needs_labels(tmp_path, monkeypatch):
    monkeypatch.setenv("FDAE_CACHE_DIR", str(tmp_path / "cache"))
    make_folder(tmp_path / "plain", n=12, corrupt=0, labels=False)
    ds = get_dataset(f"folder:{tmp_path / 'plain'}")
    with pytest.raises(FdaeError, match="has no labels.csv: the linear probe needs one"):
        probe_folder(ds, pixel_encoder)
