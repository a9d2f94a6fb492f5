"""`folder:PATH` datasets: reading, the decoded cache, bad input, labels and grids."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from _folder_images import make_folder
from fdae.data import get_dataset
from fdae.data import folder as folder_mod
from fdae.data.base import GroundTruthDataset
from fdae.data.folder import ImageFolder, as_ground_truth, cache_location
from fdae.errors import FdaeError


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    path = tmp_path / "cache"
    monkeypatch.setenv("FDAE_CACHE_DIR", str(path))
    return path


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("imgs") / "photos"
    return root, make_folder(root)


def test_reads_images_recursively_skips_bad_files_and_reports_once(images, cache, capsys):
    root, table = images
    ds = get_dataset(f"folder:{root}")
    assert isinstance(ds, ImageFolder) and ds.name == f"folder:{root}"
    assert ds.cache_built and len(ds) == len(table) == 240
    assert ds.num_channels == 3 and ds.image_size == 64 and not ds.procedural
    assert sorted(ds.files) == sorted(table)
    assert {f for f, _ in ds.skipped} == {"broken.png", "sub/empty.webp", "truncated.jpg"}
    err = capsys.readouterr().err
    assert "skipped 3 unreadable files" in err and "broken.png" in err and "truncated.jpg" in err
    assert "3 unreadable files skipped" in ds.describe()

    u8 = ds.images_uint8(np.arange(len(ds)))
    assert u8.shape == (240, 3, 64, 64) and u8.dtype == torch.uint8
    grey = ds.files.index(next(f for f in table if table[f]["colour"] == ""))
    assert torch.equal(u8[grey, 0], u8[grey, 1]) and torch.equal(u8[grey, 1], u8[grey, 2])
    # an image equals its own decode (centre crop + resize), e.g. an RGBA PNG
    rgba = next(f for f in ds.files if Image.open(root / f).mode == "RGBA")
    i = ds.files.index(rgba)
    assert np.array_equal(u8[i].numpy(), folder_mod.decode_image(root / rgba, 64))
    # the colour is where the scene put it: the centre pixel is the shape's colour
    red = next(k for k, f in enumerate(ds.files) if table[f]["colour"] == "red")
    assert u8[red, 0, 32, 32] > 150 and u8[red, 2, 32, 32] < 100

    x, rows = ds.sample_batch(16, torch.Generator().manual_seed(0), "cpu")
    assert x.shape == (16, 3, 64, 64) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1 and rows.dtype == torch.int64
    assert torch.equal(x, ds.images_at(rows))
    again, rows2 = ds.sample_batch(16, torch.Generator().manual_seed(0), "cpu")
    assert torch.equal(rows, rows2)
    assert torch.equal(ds.example_images(5, seed=3), ds.example_images(5, seed=3))

    # the labels: strings and ints coded in sorted order, greyscale images without colour
    lab = ds.labels
    assert lab.names == ("colour", "background", "shape", "random")
    assert lab.classes == [["blue", "green", "red"], ["dark", "light"], ["circle", "square"], [0, 1, 2]]
    assert (lab.values[:, 0] < 0).sum() == 24 and (lab.values[:, 1:] >= 0).all()
    assert lab.unmatched == ["truncated.jpg"]
    f = ds.files[7]
    assert lab.classes[2][lab.values[7, 2]] == table[f]["shape"]

    # reused: nothing decoded, nothing reported
    ds2 = get_dataset(f"folder:{root}")
    assert not ds2.cache_built and ds2.files == ds.files and ds2.skipped == ds.skipped
    assert "decoded" not in capsys.readouterr().err
    assert torch.equal(ds2.images_uint8([3, 1, 3]), u8[[3, 1, 3]])


def test_cache_is_reused_then_rebuilt_when_the_folder_changes(tmp_path, cache, monkeypatch):
    root = tmp_path / "f"
    make_folder(root, n=30, corrupt=0, labels=False)
    ds = get_dataset(f"folder:{root}")
    assert ds.cache_built and len(ds) == 30

    def no_decoding(*a, **k):
        raise AssertionError("decoded an image although the cache is current")

    with monkeypatch.context() as m:
        m.setattr(folder_mod, "decode_image", no_decoding)
        assert not get_dataset(f"folder:{root}").cache_built

    Image.new("RGB", (40, 50), (0, 255, 0)).save(root / "sub" / "new.png")  # a new file
    ds = get_dataset(f"folder:{root}")
    assert ds.cache_built and len(ds) == 31 and "sub/new.png" in ds.files
    assert (ds.images_uint8([ds.files.index("sub/new.png")])[0, :, 32, 32] == torch.tensor([0, 255, 0],
                                                                                          dtype=torch.uint8)).all()

    first = root / ds.files[0]
    Image.new("RGB", (40, 40), (0, 0, 255)).save(first, Image.open(first).format)  # changed content
    os.utime(first, ns=(1, 1))
    ds = get_dataset(f"folder:{root}")
    assert ds.cache_built
    assert (ds.images_uint8([0])[0, :, 5, 5].int() - torch.tensor([0, 0, 255])).abs().max() < 8  # JPEG/WebP

    (root / "sub" / "new.png").unlink()  # a removed file
    ds = get_dataset(f"folder:{root}")
    assert ds.cache_built and len(ds) == 30
    assert not get_dataset(f"folder:{root}").cache_built
    # one cache folder per (folder, resolution): rebuilds replace it, leave nothing behind
    assert sorted(p.name for p in (cache / "folders").iterdir()) == [
        cache_location(root.absolute(), 64).name, cache_location(root.absolute(), 64).name + ".lock"]

    big = get_dataset(f"folder:{root}", image_size=128)
    assert big.cache_built and big.image_size == 128 and big.images_uint8([0]).shape == (1, 3, 128, 128)
    assert not get_dataset(f"folder:{root}").cache_built  # the 64 px cache is untouched


def test_an_interrupted_cache_build_is_detected_and_rebuilt(tmp_path, cache, monkeypatch):
    root = tmp_path / "f"
    make_folder(root, n=40, corrupt=0, labels=False)
    real, calls = folder_mod.decode_image, []

    def dies_midway(path, size):
        calls.append(path)
        if len(calls) == 25:
            raise KeyboardInterrupt  # Ctrl-C (or a kill) in the middle of the build
        return real(path, size)

    with monkeypatch.context() as m:
        m.setattr(folder_mod, "decode_image", dies_midway)
        with pytest.raises(KeyboardInterrupt):
            get_dataset(f"folder:{root}", workers=1)
    loc = cache_location(root.absolute(), 64)
    assert not (loc / folder_mod.MARKER).exists()
    ds = get_dataset(f"folder:{root}")
    assert ds.cache_built and len(ds) == 40

    # a process killed hard leaves its temporary folder, or a cache without its marker /
    # with a short image file: each is rebuilt, never read
    (loc.parent / f"{loc.name}.tmp-999999").mkdir()
    (loc / folder_mod.MARKER).unlink()
    ds = get_dataset(f"folder:{root}")
    assert ds.cache_built and not list(loc.parent.glob("*.tmp-*"))
    with open(loc / "images.u8", "r+b") as fh:
        fh.truncate(1000)
    ds = get_dataset(f"folder:{root}")
    assert ds.cache_built and (loc / "images.u8").stat().st_size == 40 * 3 * 64 * 64
    assert torch.equal(ds.images_uint8([39]), torch.from_numpy(real(root / ds.files[39], 64))[None])


def test_bad_input_gives_one_clear_message(tmp_path, cache):
    with pytest.raises(FdaeError, match="no such folder"):
        get_dataset(f"folder:{tmp_path / 'nope'}")
    (tmp_path / "a.png").write_bytes(b"x")
    with pytest.raises(FdaeError, match="is a file, not a folder"):
        get_dataset(f"folder:{tmp_path / 'a.png'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FdaeError, match=r"no JPEG, PNG or WebP images found.*\(it is empty\)"):
        get_dataset(f"folder:{tmp_path / 'empty'}")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "readme.txt").write_text("hi")
    (tmp_path / "docs" / ".hidden.png").write_bytes(b"x")
    with pytest.raises(FdaeError, match=r"no JPEG, PNG or WebP images found.*holds 1 other file"):
        get_dataset(f"folder:{tmp_path / 'docs'}")
    (tmp_path / "bad").mkdir()
    for i in range(3):
        (tmp_path / "bad" / f"x{i}.jpg").write_bytes(b"\xff\xd8 not really")
    with pytest.raises(FdaeError, match=r"none of its 3 image files could be read \(x0.jpg: "):
        get_dataset(f"folder:{tmp_path / 'bad'}")
    with pytest.raises(FdaeError, match="names no folder"):
        get_dataset("folder:")
    with pytest.raises(FdaeError, match="multiple of 16"):
        get_dataset(f"folder:{tmp_path / 'bad'}", image_size=100)
    with pytest.raises(FdaeError, match="Higher resolutions are for image folders"):
        get_dataset("dsprites-synth", image_size=128)
    with pytest.raises(FdaeError, match="folder:PATH"):
        get_dataset("my_images")


def test_cli_reports_a_bad_folder_without_a_traceback(tmp_path, cache, capsys):
    from fdae.cli import main

    code = main(["data", "preview", f"folder:{tmp_path / 'nope'}", "--out", str(tmp_path / "g.png")])
    err = capsys.readouterr().err
    assert code != 0 and "no such folder" in err and "Traceback" not in err


def _write_labels(root: Path, text: str) -> None:
    (root / "labels.csv").write_text(text)


def test_labels_errors_name_the_problem(tmp_path, cache):
    root = tmp_path / "f"
    make_folder(root, n=12, corrupt=0, labels=False)
    _write_labels(root, "file,colour\nimg0001.jpg,red\nimg0001.jpg,blue\n")
    with pytest.raises(FdaeError, match="labelled twice"):
        get_dataset(f"folder:{root}")
    _write_labels(root, "file,colour,shape\nimg0001.jpg,red\n")
    with pytest.raises(FdaeError, match="line 2 has 2 cells, the header has 3"):
        get_dataset(f"folder:{root}")
    _write_labels(root, "file,colour\nzzz.png,red\n")
    with pytest.raises(FdaeError, match="none of its 1 rows names an image"):
        get_dataset(f"folder:{root}")
    _write_labels(root, "file\nimg0001.jpg\n")
    with pytest.raises(FdaeError, match="at least one attribute column"):
        get_dataset(f"folder:{root}")
    # bare names, ./paths and integer columns
    _write_labels(root, "file,size\nimg0001.jpg,10\n./sub/img0004.jpeg,2\n")
    ds = get_dataset(f"folder:{root}")
    assert ds.labels.classes == [[2, 10]]
    assert ds.labels.values[ds.files.index("img0001.jpg"), 0] == 1
    assert ds.labels.values[ds.files.index("sub/img0004.jpeg"), 0] == 0


def test_full_grid_labels_give_a_ground_truth_view(tmp_path, cache):
    from fdae.metrics import evaluate

    root = tmp_path / "grid"
    make_folder(root, n=60, corrupt=1, grid=True)
    ds = get_dataset(f"folder:{root}")
    grid = as_ground_truth(ds)
    assert isinstance(grid, GroundTruthDataset)
    assert grid.factor_names == ("colour", "shape") and grid.factor_sizes == (3, 2)
    f = np.array([[2, 1], [0, 0]])  # red square, blue circle
    img = grid.images_uint8(f)
    assert img[0, 0, 32, 32] > 150 and img[1, 2, 32, 32] > 150
    assert "factor grid" in grid.describe()

    def colour_encoder(x):  # red minus blue at the centre (colour) and noise: knows colour only
        centre = x[:, :, 28:36, 28:36].mean(dim=(2, 3))
        return torch.stack([centre[:, 0] - centre[:, 2], torch.rand(len(x))], dim=1)

    out = evaluate(grid, colour_encoder, metrics="mig,sap", protocol="dlib", num_train=200, num_test=100)
    assert out["dataset"]["name"] == ds.name and out["dataset"]["factor_sizes"] == [3, 2]
    assert 0.35 < out["metrics"]["mig"]["mig"] < 0.65  # ~1 for colour, ~0 for shape


def test_labels_that_are_not_a_grid_or_missing_say_what_is_needed(tmp_path, cache):
    root = tmp_path / "partial"
    table = make_folder(root, n=30, corrupt=0, labels=False)
    rows = [f"{f},{v['colour']},{v['shape']}" for f, v in table.items()
            if v["colour"] and not (v["colour"] == "red" and v["shape"] == "circle")]
    _write_labels(root, "file,colour,shape\n" + "\n".join(rows) + "\n")
    with pytest.raises(FdaeError, match=r"not a full factor grid \(5 of 6 combinations.*--probe linear"):
        as_ground_truth(get_dataset(f"folder:{root}"))
    plain = tmp_path / "plain"
    make_folder(plain, n=10, corrupt=0, labels=False)
    with pytest.raises(FdaeError, match=r"has no labels: .*labels.csv.*--probe linear"):
        as_ground_truth(get_dataset(f"folder:{plain}"))


def test_128_px_models_build_and_run_on_a_folder(tmp_path, cache):
    from _train_helpers import FDAE_TINY, tiny_cfg
    from fdae.methods import build_method

    root = tmp_path / "f"
    make_folder(root, n=8, corrupt=0, labels=False)
    ds = get_dataset(f"folder:{root}", image_size=128)
    x, _ = ds.sample_batch(1, torch.Generator().manual_seed(0), "cpu")
    assert x.shape == (1, 3, 128, 128)
    for cfg in (tiny_cfg(preset=FDAE_TINY), tiny_cfg()):  # (sampling at 128 px: test_folder_train)
        torch.manual_seed(0)
        model = build_method(cfg, ds.num_channels, ds.image_size)
        loss = model.loss(x, generator=torch.Generator().manual_seed(1))
        assert torch.isfinite(loss["loss"])
        loss["loss"].backward()
        assert model.encode(x).shape[0] == 1
        if cfg.method.name == "fdae":
            assert model.condition(x)["masks"].shape == (1, 2, 128, 128)


def test_pickles_without_the_memory_map(images, cache):
    import pickle

    root, _ = images
    ds = get_dataset(f"folder:{root}")
    again = pickle.loads(pickle.dumps(ds))
    assert torch.equal(again.images_uint8([0, 5]), ds.images_uint8([0, 5]))


def test_data_preview_of_a_folder_shows_examples(images, cache, tmp_path, capsys):
    from fdae.cli import main

    root, _ = images
    out = tmp_path / "p.png"
    assert main(["data", "preview", f"folder:{root}", "--out", str(out), "--columns", "5"]) == 0
    assert "example images of folder:" in capsys.readouterr().out
    with Image.open(out) as im:
        assert im.width == 5 * 66


def test_evaluate_on_a_folder_without_a_grid_says_what_labels_it_needs(tmp_path, cache):
    from fdae.metrics import evaluate

    make_folder(tmp_path / "plain", n=10, corrupt=0, labels=False)
    ds = get_dataset(f"folder:{tmp_path / 'plain'}")
    with pytest.raises(FdaeError, match="has no labels"):
        evaluate(ds, lambda x: x.flatten(1)[:, :4], metrics="mig", num_train=20, num_test=10)
