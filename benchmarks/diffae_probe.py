"""Does Diff-AE's code hold factor information after N CPU steps? Linear-probe accuracy
(`fdae.metrics.probe`, mean over factors, 1,500 images) of the tiny Diff-AE preset at 32 px,
untrained and trained, from the same seed, and whether its decoder uses the code
(`fdae.metrics.code_use`, the learning test's score) (BENCHMARKS.md, "The CPU study").

    .venv/bin/python benchmarks/diffae_probe.py 300 [key=value ...]   # e.g. edm.p_mean=1.0 optim.name=adam
"""

from __future__ import annotations

import sys
import tempfile

import torch

from fdae.config import load_config
from fdae.data import get_dataset
from fdae.metrics.code_use import code_use
from fdae.metrics.probe import probe_ground_truth
from fdae.train.checkpoint import load_run
from fdae.train.loop import initial_method, train


def main() -> None:
    torch.set_num_threads(1)
    steps, extra = int(sys.argv[1]), sys.argv[2:]
    cfg = load_config("diffae-tiny", [f"train.steps={steps}", "data.image_size=32", "train.device=cpu",
                                      "train.ckpt_every=0", "train.image_every=0", "train.eval_every=0",
                                      "train.ema_decay=0.99", *extra])
    dataset = get_dataset(cfg.data.name, image_size=cfg.data.image_size)
    untrained = probe_ground_truth(initial_method(cfg, dataset).eval(), dataset)
    run = tempfile.mkdtemp() + "/run"
    train(cfg, run, progress=False, tensorboard=False)
    method = load_run(run, device="cpu").method
    trained = probe_ground_truth(method, dataset)
    print(f"diffae-tiny {steps} steps {' '.join(extra)}: probe untrained {untrained:.3f}, trained {trained:.3f}; "
          f"code use (fdae.metrics.code_use, sigma 5) {code_use(method, dataset):.3f}")


if __name__ == "__main__":
    main()
