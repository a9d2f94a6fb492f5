"""The README's main command, `fdae demo`, end to end at a few steps."""

import json

from fdae.cli import main


def test_demo_writes_results_and_figures(tmp_path, capsys):
    out = tmp_path / "demo"
    rc = main(["demo", "--out", str(out), "--device", "cpu", "train.steps=3",
               "train.log_every=1", "eval.num_train=100", "eval.num_test=50",
               "eval.num_votes_train=30", "eval.num_votes_eval=20"])
    assert rc == 0
    results = json.loads((out / "results.json").read_text())
    assert results["dataset"] == "shapes3d-synth" and results["procedural"] is True
    assert results["step"] == 3 and isinstance(results["final_loss"], float)
    assert results["image_size"] == 32  # the demo preset trains on the 32 px rendering
    assert set(results["protocols"]) == {"paper", "dlib"}
    paper = results["protocols"]["paper"]
    assert paper["protocol"] == "paper" and set(paper["metrics"]) == {"dci", "factor_vae", "mig"}
    assert 0.0 <= paper["metrics"]["dci"]["disentanglement"] <= 1.0
    for name in ("masks", "swap_grid", "reconstructions", "concept_swaps_content", "concept_swaps_mask"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 0
    text = capsys.readouterr().out
    assert "shapes3d-synth" in text and "paper" in text and "dlib" in text
    # A second run into the same folder is refused with one message, not a traceback.
    assert main(["demo", "--out", str(out)]) == 2
