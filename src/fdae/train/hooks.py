"""Periodic work that is not a training step: evaluation and image grids (rank 0).

Both use their own random streams (never the training ones), so they leave a resumed
run identical to an uninterrupted one. Both import lazily: training works without
`fdae.metrics` or `fdae.viz`.
"""

from __future__ import annotations

import inspect
import time
from typing import Any, Callable

import torch

from fdae.config import Config
from fdae.train.logging import RunLogger
from fdae.viz.grids import pair_grid
from fdae.train.rng import make_generator

PREVIEW = 3  # rng stream of the preview batch and its sampler noise
_NO_FACTORS_SAID: set[str] = set()  # datasets whose skipped evaluation was reported


def evaluate_now(method: torch.nn.Module, dataset: Any, cfg: Config, device: torch.device,
                 say: Callable[[str], None] | None = None) -> dict[str, Any] | None:
    """Run `fdae.metrics.evaluate` on the method's encoder with the sizes of `cfg.eval`.

    Returns the metrics' result dict, or None when `fdae.metrics` is not available or the
    dataset has no ground-truth factors (an image folder without a full label grid)."""
    try:
        from fdae.metrics import evaluate
    except ImportError as err:
        if say:
            say(f"periodic evaluation skipped: fdae.metrics unavailable ({err})")
        return None
    if getattr(dataset, "factor_sizes", None) is None:  # an image folder
        from fdae.data.folder import as_ground_truth, has_factors

        if not has_factors(dataset):
            if say and dataset.name not in _NO_FACTORS_SAID:
                _NO_FACTORS_SAID.add(dataset.name)
                say(f"periodic evaluation skipped: {dataset.name} has no ground-truth factors (no labels.csv "
                    f"with a full grid of values); probe labels after training with `fdae eval RUN_DIR --probe linear`")
            return None
        dataset = as_ground_truth(dataset)
    wanted = {
        "metrics": list(cfg.eval.metrics),
        "protocol": cfg.eval.protocol,
        "random_state": int(cfg.seed),
        "groups": list(getattr(method, "groups", None) or []) or None,
        "concepts": getattr(method, "paper_concepts", None),
        "num_train": cfg.eval.num_train,
        "num_test": cfg.eval.num_test,
        "num_votes_train": cfg.eval.num_votes_train,
        "num_votes_eval": cfg.eval.num_votes_eval,
        "vote_batch_size": cfg.eval.batch_size,
        "device": device,
    }
    accepted = inspect.signature(evaluate).parameters
    kwargs = {k: v for k, v in wanted.items() if k in accepted}
    return evaluate(dataset, method.encode, **kwargs)


def summarize_metrics(result: dict[str, Any]) -> dict[str, Any]:
    """Scalars only (drop matrices such as DCI's importances), for the logs."""
    out: dict[str, Any] = {}
    for name, values in (result.get("metrics") or {}).items():
        if isinstance(values, dict):
            out[name] = {k: float(v) for k, v in values.items()
                         if isinstance(v, (int, float)) and not isinstance(v, bool)
                         or (hasattr(v, "ndim") and getattr(v, "ndim") == 0)}
        elif isinstance(values, (int, float)):
            out[name] = float(values)
    return out


class ImageHook:
    """Input | reconstruction grids (and `fdae.viz.figures.training_figures` if present;
    a model without codes, DisDiff's stage 1, logs samples only)."""

    def __init__(self, dataset: Any, cfg: Config, device: torch.device, n: int = 8,
                 say: Callable[[str], None] = print):
        self.say = say
        gen = make_generator(cfg.seed, 0, PREVIEW, device)
        self.images, _ = dataset.sample_batch(n, gen, device)
        self.seed = cfg.seed
        self.steps = cfg.train.image_steps
        self.device = device
        try:
            from fdae.viz.figures import training_figures
        except ImportError:
            training_figures = None
        self.figures = training_figures

    @torch.no_grad()
    def __call__(self, method: torch.nn.Module, logger: RunLogger, step: int) -> None:
        gen = make_generator(self.seed, 1, PREVIEW, self.device)
        if "reconstructions" in getattr(method, "figures", ("reconstructions",)):  # a DDPM has no codes
            recon = method.reconstruct(self.images, steps=self.steps, generator=gen)
            logger.image("reconstruction", pair_grid(self.images, recon), step)
        if self.figures is not None:
            params = inspect.signature(self.figures).parameters
            kwargs = {"steps": self.steps} if "steps" in params else {}
            try:
                figs = self.figures(method, self.images, **kwargs)
            except Exception as err:  # a figure bug must not kill a long run
                self.say(f"training figures skipped at step {step}: {type(err).__name__}: {err}")
                self.figures = None
                return
            for tag, image in figs.items():
                logger.image(f"figures/{tag}", image, step)


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t
