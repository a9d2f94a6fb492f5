"""What a trained model learned, as pictures: traversals, masks, code swaps, reconstructions.

Every decoded cell of one figure starts from the same noise, so differences between
cells come from the codes alone. Figures return HWC uint8 arrays; `save_png` writes them.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from fdae.methods.base import Method
from fdae.methods.fdae import FDAE
from fdae.viz.grids import colour_masks, grey, pair_grid, tile, to_uint8


def _shared_noise(model: Method, images: Tensor, seed: int) -> Tensor:
    g = torch.Generator(device="cpu").manual_seed(seed)
    return torch.randn((1, *images.shape[1:]), generator=g).to(images.device)


@torch.no_grad()
def mask_figure(model: FDAE, images: Tensor) -> np.ndarray:
    """Rows of: image, the N masks (grey), the coloured concept map, the overlay."""
    model.eval()
    masks = model.condition(images)["masks"]
    imgs, colours = to_uint8(images), colour_masks(masks)
    overlay = (0.45 * imgs + 0.55 * colours).astype(np.uint8)
    rows = []
    for b in range(images.shape[0]):
        rows.append([imgs[b], *[grey(masks[b, n][None])[0] for n in range(masks.shape[1])],
                     colours[b], overlay[b]])
    return tile(rows)


@torch.no_grad()
def reconstruction_figure(model: Method, images: Tensor, steps: int | None = None,
                          seed: int = 0) -> np.ndarray:
    """Input | reconstruction pairs (diffusion methods: Heun sampling from shared noise)."""
    model.eval()
    rec = model.reconstruct(images, steps, noise=_shared_noise(model, images, seed))
    return pair_grid(images, rec)


@torch.no_grad()
def traversal_figure(model: Method, images: Tensor, sample: Tensor, steps: int | None = None, seed: int = 0,
                     rows: int = 10, values: int = 7, chunk: int = 256) -> tuple[np.ndarray, list[str], list[str]]:
    """Latent traversals: for each image a block of rows, one per axis of
    `model.traversal_axes` (a latent, or a code group's principal direction, fitted on
    the codes of `sample`); the input, then the image decoded with the codes moved along
    that axis to each value (the same noise in every cell). Returns the grid, its row
    labels and its column labels."""
    model.eval()
    axes = model.traversal_axes(model.encode(sample), rows, values)
    codes = model.encode(images)
    moved = []
    for b in range(codes.shape[0]):
        for axis in axes:
            direction = axis.direction.to(codes.device)
            shift = axis.values.to(codes.device) - codes[b] @ direction  # (K,)
            moved.append(codes[b][None] + shift[:, None] * direction[None])
    flat = torch.cat(moved)
    noise = _shared_noise(model, images, seed)
    decoded = torch.cat([model.decode_codes(part, (part.shape[0], *images.shape[1:]), steps, noise=noise)
                         for part in flat.split(chunk)])
    out, src = to_uint8(decoded), to_uint8(images)
    k = len(axes[0].values) if axes else 0
    grid_rows, labels = [], []
    for b in range(codes.shape[0]):
        for a, axis in enumerate(axes):
            start = (b * len(axes) + a) * k
            grid_rows.append([src[b] if a == 0 else None, *out[start:start + k]])
            labels.append(f"image {b + 1}: {axis.label}" if a == 0 else axis.label)
    columns = ["input"]
    if axes and all(torch.equal(a.values, axes[0].values) for a in axes):  # one scale: the values
        span = float(axes[0].values.abs().max())
        columns += [f"{0.0 if abs(float(v)) < 1e-6 * span else float(v):.3g}" for v in axes[0].values]
    elif axes:  # each axis its own range: where the ends lie
        columns += ["5th pct", *[""] * (k - 2), "95th pct"] if k > 1 else [""]
    return tile(grid_rows), labels, columns


@torch.no_grad()
def swap_grid(model: FDAE, row_images: Tensor, col_images: Tensor, steps: int | None = None,
              seed: int = 0) -> np.ndarray:
    """Cell (i, j): content codes of row image i with the mask codes of column image j
    (the paper's supplementary Figs. 3-4). First row/column show the source images."""
    model.eval()
    rc, _ = model.codes(row_images)
    _, cm = model.codes(col_images)
    if cm is None:
        raise ValueError("swap grids need a model with masks (method.use_masks=true)")
    r, c = rc.shape[0], cm.shape[0]
    content = rc[:, None].expand(r, c, *rc.shape[1:]).reshape(r * c, *rc.shape[1:])
    masks = cm[None].expand(r, c, *cm.shape[1:]).reshape(r * c, *cm.shape[1:])
    cond = model.condition_from_codes(content, masks)
    shape = (r * c, *row_images.shape[1:])
    out = to_uint8(model.decode(cond, shape, steps, noise=_shared_noise(model, row_images, seed)))
    rows_img, cols_img = to_uint8(row_images), to_uint8(col_images)
    rows = [[None, *cols_img]]
    for i in range(r):
        rows.append([rows_img[i], *out[i * c:(i + 1) * c]])
    return tile(rows)


@torch.no_grad()
def concept_swap_figure(model: FDAE, images: Tensor, donors: Tensor, kind: str = "content",
                        steps: int | None = None, seed: int = 0) -> np.ndarray:
    """Row b: image b, donor b, then for each concept n the decode of image b with its
    concept-n content (or mask) code replaced by the donor's: one column per concept
    (the unit swaps of FDAE's content_n, or mask_n, groups)."""
    if kind not in ("content", "mask"):
        raise ValueError("kind must be 'content' or 'mask'")
    if kind == "mask" and not model.cfg.use_masks:
        raise ValueError("mask swaps need a model with masks (method.use_masks=true)")
    which = [i for i, (name, _) in enumerate(model.groups) if name.startswith(f"{kind}_")]
    return unit_swap_figure(model, images, donors, steps, seed, which)


@torch.no_grad()
def unit_swap_figure(model: Method, images: Tensor, donors: Tensor, steps: int | None = None,
                     seed: int = 0, which: list[int] | None = None) -> np.ndarray:
    """Row b: image b, donor b, then for each unit (group of the representation; `which`:
    these groups only) the decode of image b with that unit's code replaced by the
    donor's, from one shared noise: a disentangled unit changes one attribute, to the
    donor's value (EncDiff, DisDiff; FDAE's concepts)."""
    model.eval()
    codes, d_codes = model.encode(images), model.encode(donors)
    from fdae.metrics.protocol import group_slices

    b = codes.shape[0]
    slices = group_slices(model.groups)
    slices = [slices[i] for i in which] if which is not None else slices
    n = len(slices)
    swapped = codes[:, None].repeat(1, n, 1)  # (B, units, d)
    for u, sl in enumerate(slices):
        swapped[:, u, sl] = d_codes[:, sl]
    flat = swapped.reshape(b * n, -1)
    out = to_uint8(model.decode_codes(flat, (flat.shape[0], *images.shape[1:]), steps,
                                      noise=_shared_noise(model, images, seed)))
    src, don = to_uint8(images), to_uint8(donors)
    return tile([[src[i], don[i], *out[i * n:(i + 1) * n]] for i in range(b)])


@torch.no_grad()
def sample_figure(model: Method, n: int, shape: tuple[int, ...], steps: int | None = None, seed: int = 0) -> np.ndarray:
    """n unconditional samples in a row-major grid of up to 8 columns (a model without codes)."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    noise = torch.randn((n, *shape), generator=g)
    imgs = to_uint8(model.sample(n, shape, steps, noise=noise.to(next(model.parameters()).device)))
    cols = min(8, n)
    return tile([list(imgs[i:i + cols]) for i in range(0, n, cols)])


@torch.no_grad()
def training_figures(model: Method, images: Tensor, steps: int = 12) -> dict[str, np.ndarray]:
    """The figures logged during training (cheap: few images, few sampler steps)."""
    if "reconstructions" not in model.figures:
        return {"samples": sample_figure(model, images.shape[0], tuple(images.shape[1:]), steps)}
    figs = {"reconstructions": reconstruction_figure(model, images, steps)}
    if "masks" in model.figures:
        figs["masks"] = mask_figure(model, images)
        half = max(1, images.shape[0] // 2)
        figs["swap_grid"] = swap_grid(model, images[:half], images[half:half * 2] if images.shape[0] > 1 else images, steps)
    return figs
