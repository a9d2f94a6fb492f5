"""DisDiff's two stages on this CPU, and the effect of its disentangling loss.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/disdiff_cpu.py --stage1-steps 1500 --stage2-steps 400

Trains stage 1 (the `disdiff-shapes3d-synth-stage1` preset: an unconditional DDPM on
32 px shapes3d-synth) once, then stage 2 twice on it from the same seed: DisDiff
(lambda = 0.05) and the frozen-model-only baseline (lambda = 0: the encoder and fields
trained with L_r alone). Scores each encoder, and the untrained one, under DisDiff's
protocol (unit-pca: one PCA dimension per unit, then FactorVAE and MIG) and the standard
one (dlib, on the 6 x 32 raw dimensions), 1,000 / 500 samples, 300 / 200 votes. Prints
steps/s of each stage and a Markdown table.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from fdae.config import load_config
from fdae.data import get_dataset
from fdae.metrics import evaluate
from fdae.train.checkpoint import load_run
from fdae.train.loop import initial_method, train
from plugins_cpu import settle_batchnorm  # noqa: E402  (this folder's script, on sys.path)

SIZES = dict(metrics=["factor_vae", "mig"], random_state=0, num_train=1000, num_test=500, num_votes_train=300,
             num_votes_eval=200)
QUIET = ["train.device=cpu", "train.image_every=0", "train.eval_every=0", "train.ckpt_every=0"]


def scores(method, dataset) -> dict[str, float]:
    out = {}
    for protocol in ("unit-pca", "dlib"):
        res = evaluate(dataset, method.encode, protocol=protocol, groups=method.groups, **SIZES)
        out[f"{protocol} FactorVAE"] = res["metrics"]["factor_vae"]["eval_accuracy"]
        out[f"{protocol} MIG"] = res["metrics"]["mig"]["mig"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stage1-steps", type=int, default=1500)
    ap.add_argument("--stage2-steps", type=int, default=400)
    ap.add_argument("--stage1", default=None, help="an existing stage-1 run to reuse")
    args = ap.parse_args()
    torch.set_num_threads(1)
    root = tempfile.mkdtemp()
    stage1 = args.stage1
    if stage1 is None:
        stage1 = f"{root}/stage1"
        cfg1 = load_config("disdiff-shapes3d-synth-stage1", [f"train.steps={args.stage1_steps}", *QUIET])
        t = time.perf_counter()
        res = train(cfg1, stage1, progress=False, tensorboard=False)
        sec = time.perf_counter() - t
        print(f"stage 1: {args.stage1_steps} steps in {sec / 60:.1f} min ({args.stage1_steps / sec:.2f} steps/s); "
              f"last logged L1 loss {res.last_metrics.get('loss', float('nan')):.4f}", flush=True)
    rows = []
    for name, weight in (("DisDiff (lambda 0.05)", 0.05), ("L_r only (lambda 0)", 0.0)):
        cfg2 = load_config("disdiff-shapes3d-synth-stage2", [f"method.pretrained={stage1}",
                                                             f"method.disentangle_weight={weight}",
                                                             f"train.steps={args.stage2_steps}", *QUIET])
        dataset = get_dataset(cfg2.data.name, image_size=cfg2.data.image_size)
        if not rows:
            untrained = initial_method(cfg2, dataset)
            settle_batchnorm(untrained, dataset)
            rows.append(("untrained encoder", scores(untrained, dataset), None))
        run = f"{root}/stage2-{weight}"
        t = time.perf_counter()
        train(cfg2, run, progress=False, tensorboard=False)
        sec = time.perf_counter() - t
        rows.append((name, scores(load_run(run, device="cpu").method, dataset), args.stage2_steps / sec))
        print(f"stage 2, {name}: {args.stage2_steps} steps in {sec / 60:.1f} min", flush=True)
    header = list(rows[0][1])
    print("\n| stage 2 | " + " | ".join(header) + " | steps/s |\n|---|" + "---|" * (len(header) + 1))
    for name, s, rate in rows:
        print(f"| {name} | " + " | ".join(f"{s[k]:.3f}" for k in header) + f" | {'' if rate is None else f'{rate:.2f}'} |")


if __name__ == "__main__":
    main()
