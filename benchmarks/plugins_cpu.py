"""Skip Dropout and Dynamic Gaussian Anchoring on EncDiff (and on FDAE), on this CPU.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/plugins_cpu.py --steps 600 [--rows encdiff,encdiff+sd,...]

Each row trains its preset for a fixed number of steps from seed 0 (32 px
shapes3d-synth, one thread) and is scored under two protocols on the same sizes
(FactorVAE and MIG; 1,000 / 500 samples, 300 / 200 votes): `dlib` on the method's
representation (EncDiff: its 20 raw scalars), and the authors' own: `unit-pca` on
EncDiff's tokens (one PCA dimension per unit, as the DyGA follow-up evaluates), `paper`
for FDAE. The untrained encoder of each preset is scored the same way, after its
BatchNorm statistics are estimated on training images. Prints a Markdown table.
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

SD = ["unet.skip_dropout=0.2"]
DYGA = ["dyga.enabled=true"]
ROWS = {
    "encdiff": ("encdiff-shapes3d-synth", []),
    "encdiff+sd": ("encdiff-shapes3d-synth", SD),
    "encdiff+sd+dyga": ("encdiff-shapes3d-synth", SD + DYGA),
    "encdiff+dyga": ("encdiff-shapes3d-synth", DYGA),
    "fdae": ("shapes3d-demo", []),
    "fdae+sd": ("shapes3d-demo", SD),
    "fdae+dyga": ("shapes3d-demo", DYGA),
    "fdae+sd+dyga": ("shapes3d-demo", SD + DYGA),
}
SIZES = dict(metrics=["factor_vae", "mig"], random_state=0, num_train=1000, num_test=500, num_votes_train=300,
             num_votes_eval=200)


def settle_batchnorm(method, dataset, batches: int = 30) -> None:
    """An untrained encoder's BatchNorm layers hold their initial running statistics
    (mean 0, variance 1), under which eval-mode codes barely vary: estimate them on
    training images first (no weight changes), so the baseline is a random encoder,
    not a degenerate one."""
    gen = torch.Generator().manual_seed(0)
    method.train()
    with torch.no_grad():
        for _ in range(batches):
            method.representation(dataset.sample_batch(64, gen, torch.device("cpu"))[0])
    method.eval()


def scores(method, dataset) -> dict[str, float]:
    out = {}
    own = "unit-pca" if method.cfg.name == "encdiff" else "paper"
    for protocol in ("dlib", own):
        if protocol == "unit-pca":  # the tokens, one PCA dimension per unit
            method.cfg.representation = "tokens"
        extra = {"concepts": getattr(method, "paper_concepts", None)} if protocol == "paper" else {}
        res = evaluate(dataset, method.encode, protocol=protocol, groups=method.groups, **SIZES, **extra)
        out[f"{protocol} FactorVAE"] = res["metrics"]["factor_vae"]["eval_accuracy"]
        out[f"{protocol} MIG"] = res["metrics"]["mig"]["mig"]
        if protocol == "unit-pca":
            method.cfg.representation = "scalars"
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--rows", default="encdiff,encdiff+sd,encdiff+sd+dyga")
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"{args.steps} steps, 32 px shapes3d-synth, seed 0, one thread\n")
    header = None
    untrained_done = set()
    for row in args.rows.split(","):
        preset, extra = ROWS[row]
        cfg = load_config(preset, [f"train.steps={args.steps}", "data.image_size=32", "train.device=cpu",
                                   "train.ckpt_every=0", "train.image_every=0", "train.eval_every=0", *extra])
        dataset = get_dataset(cfg.data.name, image_size=cfg.data.image_size)
        lines = []
        if preset not in untrained_done:
            untrained_done.add(preset)
            untrained = initial_method(cfg, dataset)
            settle_batchnorm(untrained, dataset)
            lines.append((f"{preset} untrained", scores(untrained, dataset), None))
        run = tempfile.mkdtemp() + "/run"
        t = time.perf_counter()
        train(cfg, run, progress=False, tensorboard=False)
        sec = time.perf_counter() - t
        lines.append((row, scores(load_run(run, device="cpu").method, dataset), args.steps / sec))
        for name, s, rate in lines:
            if header is None:
                header = list(s)
                print("| row | " + " | ".join(header) + " | steps/s |\n|---|" + "---|" * (len(header) + 1))
            print(f"| {name} | " + " | ".join(f"{s[k]:.3f}" for k in header) + f" | {'' if rate is None else f'{rate:.2f}'} |",
                  flush=True)


if __name__ == "__main__":
    main()
