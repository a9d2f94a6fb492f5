"""Code use: does a diffusion autoencoder's decoder use its code?

The denoising error at one noise level with each image's code swapped for another
image's (the batch rolled by one), over the error with its own code. 1 means the code
changes nothing (an untrained model with its zero-initialised output gives exactly 1);
the more the decoder relies on the code, the larger. It says nothing about whether the
code is disentangled: Diff-AE's learning test uses it because at CPU sizes its code is
not yet more informative than a random encoder's, while its decoder does learn to use it.
"""

from __future__ import annotations

import numpy as np
import torch


@torch.no_grad()
def code_use(method, dataset, sigma: float = 5.0, n: int = 256, seed: int = 0) -> float:
    """err(other image's code) / err(own code) at `sigma`, on n images drawn with
    RandomState(seed + 1) and noise from Generator(seed)."""
    was = method.training
    method.eval()
    try:
        images = dataset.images(dataset.sample_factors(n, np.random.RandomState(seed + 1)))
        noisy = images + sigma * torch.randn(images.shape, generator=torch.Generator().manual_seed(seed))
        sig = torch.full((n,), sigma)
        own, other = method.condition(images), method.condition(images.roll(1, dims=0))
        err_own = ((method.denoise(noisy, sig, own) - images) ** 2).mean()
        err_other = ((method.denoise(noisy, sig, other) - images) ** 2).mean()
    finally:
        method.train(was)
    return float(err_other / err_own)
