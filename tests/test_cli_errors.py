"""What a user gets from the command line for inputs that cannot work: one message and
exit status 2, before any expensive work, and no stray files."""

from __future__ import annotations

import os

import pytest

from fdae.cli import main

from _folder_images import make_folder
from _train_helpers import FDAE_SMALL, QUIET

TINY = "shapes3d-tiny"  # a packaged preset, by name


def _fails(argv, capsys, *needles):
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A 2-step FDAE trained on an image folder given by a *relative* path."""
    base = tmp_path_factory.mktemp("cli")
    make_folder(base / "imgs", n=24, corrupt=0, labels=False)
    cwd = os.getcwd()
    os.chdir(base)
    try:
        rc = main(["train", "--config", TINY, *FDAE_SMALL, *QUIET, "data.name=folder:imgs", "train.steps=2",
                   "train.batch_size=2", "--run-dir", str(base / "run"), "--no-progress"])
    finally:
        os.chdir(cwd)
    assert rc == 0
    return base / "run"


def test_a_relative_folder_is_saved_absolute_so_later_commands_work_anywhere(run_dir, tmp_path, capsys,
                                                                             monkeypatch):
    from fdae.train.checkpoint import run_config

    assert run_config(run_dir).data.name == "folder:" + str(run_dir.parent / "imgs")
    monkeypatch.chdir(tmp_path)  # elsewhere, where no 'imgs' folder exists
    assert main(["sample", str(run_dir), "--n", "2", "--steps", "2", "--out", str(tmp_path / "s.png")]) == 0
    assert (tmp_path / "s.png").exists()


def test_viz_and_sample_refuse_bad_arguments_before_working(run_dir, tmp_path, capsys):
    _fails(["viz", str(run_dir), "--device", "bogus"], capsys, "--device")
    _fails(["viz", str(run_dir), "--steps", "-3"], capsys, "--steps")
    (tmp_path / "afile").write_text("x")
    _fails(["viz", str(run_dir), "--out", str(tmp_path / "afile")], capsys, "is a file")
    _fails(["sample", str(run_dir), "--out", str(tmp_path / "x.jpg")], capsys, ".png")
    _fails(["sample", str(run_dir), "--out", str(tmp_path / "afile" / "x.png")], capsys, "is a file")
    _fails(["demo", "--out", str(tmp_path / "d"), "--device", "bogus"], capsys, "--device")


def test_a_dataset_unlike_the_runs_and_a_run_dir_that_is_a_file_are_named(run_dir, tmp_path, capsys):
    _fails(["eval", str(run_dir), "--dataset", "dsprites-synth", "--metrics", "mig"], capsys, "3-channel",
           "1-channel")
    (tmp_path / "afile").write_text("x")
    _fails(["train", "--config", TINY, *QUIET, "train.steps=1", "--run-dir", str(tmp_path / "afile" / "run")],
           capsys, "--run-dir", "is a file")


def test_eval_checks_outputs_before_evaluating(tmp_path, capsys):
    _fails(["eval", "oracle", "--plot", str(tmp_path / "imp.xyz")], capsys, "--plot")
    _fails(["eval", "oracle", "--metrics", "mig", "--plot", str(tmp_path / "imp.png")], capsys, "include dci")
    _fails(["eval", "oracle", "--out", str(tmp_path)], capsys, ".json")
    _fails(["eval", "oracle", "--encode-batch-size", "0"], capsys, "--encode-batch-size")


def test_data_commands_refuse_bad_outputs_and_leave_nothing_behind(tmp_path, capsys, monkeypatch):
    _fails(["data", "preview", "dsprites-synth", "--out", str(tmp_path / "x.jpgg")], capsys, "--out")
    _fails(["data", "export", "dsprites-synth", str(tmp_path), "--factor-sizes", "1,1,2,2,2"], capsys, "folder")
    assert not list(tmp_path.parent.glob(f"{tmp_path.name}.partial"))
    (tmp_path / "afile").write_text("x")
    make_folder(tmp_path / "imgs", n=4, corrupt=0, labels=False)
    monkeypatch.setenv("FDAE_CACHE_DIR", str(tmp_path / "afile"))
    _fails(["data", "preview", f"folder:{tmp_path / 'imgs'}", "--out", str(tmp_path / "p.png")], capsys,
           "FDAE_CACHE_DIR")


def test_demo_refuses_a_folder_without_factors_before_training(tmp_path, capsys):
    make_folder(tmp_path / "imgs", n=4, corrupt=0, labels=False)
    _fails(["demo", "--out", str(tmp_path / "d"), f"data.name=folder:{tmp_path / 'imgs'}"], capsys, "image folder")
    assert not (tmp_path / "d" / "run").exists()
