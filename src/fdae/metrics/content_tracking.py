"""Content tracking: a disentanglement score from images alone (no factor labels), for
the CL-Dis reading of docs/cldis.md.

Move one code unit (or navigation direction) k of an image's code from the low to the
high end of its range, decode both codes from the same noise, and record where the
generated image changed: the energy map e_k(p) = sum over channels of the squared
difference at pixel p. If each unit controls one thing, the changed content tells which
unit was moved. The score is that statement as a number, per image: with each active
unit's map normalised to a distribution over pixels, p(p | k), and units equally likely,

    tracking = I(unit; pixel) / log K_active
             = 1 - sum_p p(p) H(unit | pixel = p) / log K_active,

averaged over images. 1: every pixel that changes is changed by one unit only (units own
disjoint content); 0: every unit changes the same pixels in the same proportions. Units
whose mean change is below `active_threshold` of the largest unit's change the image
too little to be tracked and are left out (their count is reported); with fewer than two
active units nothing can be told apart and the score is 0.

Reported beside it: `consistency`, the mean cosine similarity between a unit's map on one
image and its mean map over the images (1: the unit changes the same place in every
image); the number of active units; and each unit's mean change.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from fdae.errors import FdaeError


def tracking_from_maps(maps: Tensor, active_threshold: float = 0.05) -> dict:
    """The scores of change-energy maps (K units, n images, H, W), all >= 0."""
    if maps.ndim != 4:
        raise FdaeError(f"change maps must be (units, images, H, W); got shape {tuple(maps.shape)}")
    maps = maps.double().clamp_min(0)
    k, n = maps.shape[:2]
    flat = maps.reshape(k, n, -1)
    mass = flat.sum(2)  # (K, n)
    change = mass.mean(1)  # (K,)
    top = float(change.max()) if k else 0.0
    active = (change >= active_threshold * top) & (change > 0) if top > 0 else torch.zeros(k, dtype=torch.bool)
    k_active = int(active.sum())
    result = {"units": k, "active_units": k_active, "unit_change": change.tolist(),
              "active": active.tolist(), "active_threshold": active_threshold}
    if k_active < 2:
        return {**result, "tracking": 0.0, "consistency": 0.0, "per_image": [0.0] * n}
    p = flat[active] / mass[active].clamp_min(1e-30)[..., None]  # p(pixel | unit), per image
    p = torch.where(mass[active][..., None] > 0, p, torch.zeros_like(p))
    p_pixel = p.mean(0)  # (n, P): units equally likely
    q = p / p_pixel.clamp_min(1e-300)[None] / k_active  # p(unit | pixel)
    h_unit_given_pixel = -(q * torch.log(q.clamp_min(1e-300))).sum(0)  # (n, P)
    per_image = 1 - (p_pixel * h_unit_given_pixel).sum(1) / math.log(k_active)
    mean_map = p.mean(1, keepdim=True)
    cos = (p * mean_map).sum(2) / (p.norm(dim=2) * mean_map.norm(dim=2)).clamp_min(1e-30)
    return {**result, "tracking": float(per_image.mean()), "consistency": float(cos.mean()),
            "per_image": per_image.tolist()}


def move_codes(codes: Tensor, direction: Tensor, value: float) -> Tensor:
    """Codes whose projection on the unit `direction` is set to `value`."""
    proj = codes @ direction
    return codes + (value - proj)[:, None] * direction[None]


@torch.no_grad()
def change_maps(method, images: Tensor, axes: Sequence, steps: int | None = None,
                generator: torch.Generator | None = None, batch_size: int = 64) -> Tensor:
    """(K, n, H, W): for each axis, the per-pixel squared change (summed over channels)
    between the images decoded at its lowest and highest value, each image's pair from
    one shared noise."""
    codes = method.encode(images)
    shape = tuple(images.shape)
    noise = torch.randn(shape, generator=generator, device=images.device) if generator is not None else \
        torch.randn(shape, device=images.device)
    out = []
    for axis in axes:
        direction = axis.direction.to(codes)
        lo, hi = float(axis.values[0]), float(axis.values[-1])
        per = []
        for i in range(0, codes.shape[0], batch_size):
            c, z = codes[i:i + batch_size], noise[i:i + batch_size]
            b_shape = (c.shape[0], *shape[1:])
            low = method.decode_codes(move_codes(c, direction, lo), b_shape, steps, noise=z)
            high = method.decode_codes(move_codes(c, direction, hi), b_shape, steps, noise=z)
            per.append((high.float() - low.float()).square().sum(1))
        out.append(torch.cat(per))
    return torch.stack(out)


def content_tracking(method, dataset, num_images: int = 64, units: int = 10, steps: int | None = 10,
                     seed: int = 0, axes: Sequence | None = None, active_threshold: float = 0.05,
                     device=None) -> dict:
    """The content-tracking scores of a trained `method` on `num_images` images of
    `dataset` (any dataset: labels are never read). Axes: the method's own traversal axes
    (`traversal_axes`: its units, or its groups' principal directions), at most `units`;
    or those given (e.g. navigation directions). Diffusion decoders sample with `steps`
    Heun steps."""
    if not hasattr(method, "decode_codes"):
        raise FdaeError("content tracking moves codes and decodes them: it needs a trained run, whose method "
                        "decodes codes to images")
    device = device or next(method.parameters()).device
    gen = torch.Generator(device="cpu").manual_seed(seed)
    images = dataset.sample_batch(num_images, gen)[0].to(device)
    codes = method.encode(images)
    if axes is None:
        axes = method.traversal_axes(codes, rows=units)
    if len(axes) < 2:
        raise FdaeError(f"content tracking compares units, and this representation gives {len(axes)} axis; "
                        "it needs at least two")
    noise_gen = torch.Generator(device=device).manual_seed(seed + 1)
    maps = change_maps(method, images, axes, steps=steps, generator=noise_gen)
    result = tracking_from_maps(maps.cpu(), active_threshold)
    result.update({"axes": [a.label for a in axes], "num_images": num_images, "steps": steps, "seed": seed})
    result["unit_change"] = [float(np.round(v, 6)) for v in result["unit_change"]]
    return result
