"""The one shape of fdae's learning tests: a config trained a fixed number of steps must
beat, by given margins, the untrained encoder it started from (steps, not minutes)."""

from __future__ import annotations

from pathlib import Path

from fdae.data import get_dataset
from fdae.metrics import evaluate
from fdae.train.checkpoint import load_run
from fdae.train.loop import initial_method, train


def _scores(method, dataset, eval_kwargs: dict) -> dict[str, float]:
    res = evaluate(dataset, method.encode, groups=method.groups, **eval_kwargs)
    return {"factor_vae": res["metrics"]["factor_vae"]["eval_accuracy"], "mig": res["metrics"]["mig"]["mig"]}


def assert_learns(cfg, run_dir: Path, eval_kwargs: dict, min_gain: dict[str, float]) -> None:
    """Train `cfg` in `run_dir`, score the untrained and the trained encoder with
    `evaluate(**eval_kwargs)` (FactorVAE score and MIG), and require each gain. Prints
    both (`pytest -s` shows the measured values quoted in the tests' comments)."""
    dataset = get_dataset(cfg.data.name, image_size=cfg.data.image_size)
    untrained = _scores(initial_method(cfg, dataset), dataset, eval_kwargs)  # the weights training starts from
    result = train(cfg, run_dir, progress=False, tensorboard=False)
    assert result.step == cfg.train.steps and result.skipped_steps == 0
    trained = _scores(load_run(run_dir, device="cpu").method, dataset, eval_kwargs)
    print(f"{cfg.method.name} on {cfg.data.name}, {cfg.train.steps} steps: untrained {untrained}, trained {trained}")
    for name, gain in min_gain.items():
        assert trained[name] >= untrained[name] + gain, (name, untrained, trained)
