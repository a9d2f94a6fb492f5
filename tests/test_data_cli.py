"""`fdae data list | preview | export`, through a parser built from this module only."""

import argparse

import numpy as np
import pytest
from PIL import Image

from fdae.commands import data as data_cmd
from fdae.errors import FdaeError


def run(argv):
    parser = argparse.ArgumentParser(prog="fdae")
    data_cmd.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_list_shows_every_dataset_found_or_not(tmp_path, capsys):
    run(["data", "export", "dsprites-synth", str(tmp_path / "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"),
         "--factor-sizes", "1,1,1,2,2", "--no-progress"])
    capsys.readouterr()
    assert run(["data", "list", "--data-root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for name in ("shapes3d-synth", "dsprites-synth", "shapes3d", "mpi3d-complex", "cars3d", "smallnorb"):
        assert f"\n{name} " in out
    assert "found: " + str(tmp_path) in out and "missing: 3dshapes.h5" in out
    assert "10x10x10x8x4x15" in out and "4x4x2x3x3x40x40" in out


def test_preview_writes_one_row_per_factor(tmp_path, capsys):
    out = tmp_path / "grid.png"
    assert run(["data", "preview", "dsprites-synth", "--out", str(out), "--columns", "4"]) == 0
    assert "dsprites-synth" in capsys.readouterr().out
    img = Image.open(out)
    assert img.size == (120 + 4 * 66, 18 + 5 * 66)
    with pytest.raises(FdaeError, match="does not exist"):
        run(["data", "preview", "dsprites-synth", "--out", str(tmp_path / "no" / "g.png")])


def test_export_and_read_back(tmp_path):
    path = tmp_path / "3dshapes.h5"
    assert run(["data", "export", "shapes3d-synth", str(path), "--factor-sizes", "1,1,2,1,4,2", "--no-progress"]) == 0
    from fdae.data import get_dataset

    ds = get_dataset("shapes3d", root=tmp_path, factor_sizes=(1, 1, 2, 1, 4, 2))
    f = ds.factors_of(np.arange(len(ds)))
    assert np.array_equal(ds.images(f).numpy(), get_dataset("shapes3d-synth").images(f).numpy())


def test_user_errors_are_fdae_errors(tmp_path):
    with pytest.raises(FdaeError, match="only procedural"):
        run(["data", "export", "shapes3d", str(tmp_path / "x.h5")])
    with pytest.raises(FdaeError, match="--factor-sizes"):
        run(["data", "export", "dsprites-synth", str(tmp_path / "x.npz"), "--factor-sizes", "1,2"])
    with pytest.raises(FdaeError, match="3dshapes.h5"):
        run(["data", "preview", "shapes3d", "--data-root", str(tmp_path)])


@pytest.mark.parametrize("name, rows", [("mpi3d-synth", 7), ("cars3d-synth", 3)])
def test_preview_of_the_scene_look_alikes(tmp_path, capsys, name, rows):
    out = tmp_path / "grid.png"
    assert run(["data", "preview", name, "--out", str(out), "--columns", "3"]) == 0
    assert name in capsys.readouterr().out
    assert Image.open(out).size == (120 + 3 * 66, 18 + rows * 66)


def test_export_scene_look_alikes_from_the_command_line(tmp_path, monkeypatch):
    from fdae.data import get_dataset

    monkeypatch.setenv("FDAE_CACHE_DIR", str(tmp_path / "cache"))
    assert run(["data", "export", "mpi3d-synth", str(tmp_path / "mpi3d_toy.npz"), "--factor-sizes",
                "1,2,1,1,1,2,1", "--no-progress"]) == 0
    ds = get_dataset("mpi3d-toy", root=tmp_path, factor_sizes=(1, 2, 1, 1, 1, 2, 1))
    f = ds.factors_of(np.arange(len(ds)))
    assert np.array_equal(ds.images(f).numpy(), get_dataset("mpi3d-synth").images(f).numpy())
    assert run(["data", "export", "cars3d-synth", str(tmp_path / "cars"), "--factor-sizes", "1,1,1",
                "--no-progress"]) == 0
    assert (tmp_path / "cars" / "car_001_mesh.mat").exists()
    with pytest.raises(FdaeError, match="already exists"):
        run(["data", "export", "cars3d-synth", str(tmp_path / "cars"), "--factor-sizes", "1,1,1"])
