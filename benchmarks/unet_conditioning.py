"""How the noise level reaches the U-Net's ResBlocks, measured on the demo preset.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/unet_conditioning.py --steps 300

Each variant trains `shapes3d-demo` (FDAE, the tiny U-Net at 16 channels, 32 px) for the
same fixed steps from seed 0 with its `unet.*` overrides, then reports:
  * the diffusion loss averaged over the last 50 steps;
  * held-out denoising MSE of the EMA model, E|D(x + sigma n) - x|^2, at sigma 0.2, 1, 5
    and 20 (256 images the training never drew, one fixed noise);
  * how much the raw U-Net output moves between noise labels c_noise = -1 and +1 for the
    same input and condition (max |F(-1) - F(+1)| / max |F(-1)|): about 1e-6 for a
    network that does not hear its noise level.
Variants are given as `name:key=value,key=value`; the default set compares the group
size of the norms under ADM's scale-shift norm, and the official FDAE's additive
embedding at 4 channels per group. Prints a Markdown table (BENCHMARKS.md, "The U-Net
hears its noise level").
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from fdae.config import load_config
from fdae.train.checkpoint import load_run
from fdae.train.loop import train

VARIANTS = [
    "scale-shift, 1 ch/group:unet.norm_channels=1",
    "scale-shift, 2 ch/group:unet.norm_channels=2",
    "scale-shift, 4 ch/group (default):",
    "scale-shift, 8 ch/group:unet.norm_channels=8",
    "additive, 4 ch/group:unet.scale_shift=false",
]
SIGMAS = (0.2, 1.0, 5.0, 20.0)


@torch.no_grad()
def held_out(method, dataset, n: int = 256) -> tuple[list[float], float]:
    """Denoising MSE per sigma and the raw output's relative move between c_noise -1 and +1."""
    images = dataset.images(dataset.sample_factors(n, np.random.RandomState(12345))).float()
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(0))
    cond = method.condition(images)
    errs = []
    for s in SIGMAS:
        d = method.denoise(images + s * noise, torch.full((n,), s), cond)
        errs.append(float(((d - images) ** 2).mean()))
    x = noise[:16]
    sub = {k: v[:16] for k, v in cond["unet"].items()}
    lo = method.unet(x, torch.full((16,), -1.0), **sub)
    hi = method.unet(x, torch.full((16,), 1.0), **sub)
    return errs, float((lo - hi).abs().max() / lo.abs().max())


def run(name: str, overrides: list[str], steps: int, root: Path) -> dict:
    cfg = load_config("shapes3d-demo", [f"train.steps={steps}", "train.device=cpu", "train.ckpt_every=0",
                                        "train.image_every=0", "train.eval_every=0", "train.log_every=1",
                                        *overrides])
    out = root / name.replace(" ", "_").replace(",", "").replace("/", "-").replace("(", "").replace(")", "")
    train(cfg, out, progress=False, tensorboard=False)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    losses = [r["diffusion"] for r in records if r.get("diffusion") is not None][-50:]
    loaded = load_run(out, device="cpu")
    errs, move = held_out(loaded.method.eval(), loaded.dataset)
    return {"name": name, "loss": float(np.mean(losses)), "mse": errs, "move": move}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--variants", nargs="*", default=VARIANTS, help="name:key=value,key=value")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as root:
        for spec in args.variants:
            name, _, over = spec.partition(":")
            rows.append(run(name, [o for o in over.split(",") if o], args.steps, Path(root)))
            print(json.dumps(rows[-1]), flush=True)
    print(f"\n| variant | diffusion loss, last {min(50, args.steps)} steps | "
          + " | ".join(f"MSE at sigma {s:g}" for s in SIGMAS) + " | raw output move, c_noise -1 vs +1 |")
    print("|---|---:|" + "---:|" * len(SIGMAS) + "---:|")
    for r in rows:
        print(f"| {r['name']} | {r['loss']:.3f} | " + " | ".join(f"{e:.4f}" for e in r["mse"])
              + f" | {r['move']:.2g} |")


if __name__ == "__main__":
    main()
