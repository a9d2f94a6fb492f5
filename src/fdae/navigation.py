"""Self-supervised latent navigation: K directions in a trained run's code space that a
reconstructor can tell apart from the images alone (the approach of Voynov & Babenko,
2020, "Unsupervised Discovery of Interpretable Directions in the GAN Latent Space").

A frozen method renders a code and the same code shifted by eps along direction k; a
small CNN sees both images and must say which k (and how far). Directions whose effects
are distinct and visible are the easy ones to recognise, so training the directions and
the reconstructor together pushes the directions towards separate image changes.

    navigator, history = train_navigation(method, dataset, directions=10, steps=1000)
    save_navigation(run_dir, navigator, meta)          # RUN_DIR/navigation.pt
    axes = navigator.axes(method.encode(images))       # rows for fdae.viz's traversals
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import pickle
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fdae.errors import FdaeError, replacing
from fdae.methods.base import DiffusionAutoencoder, Method, TraversalAxis
from fdae.methods.vae.base import GaussianVAE

FILE = "navigation.pt"
FORMAT = "fdae-navigation"
VERSION = 1
FIGURE = "navigation.png"


@dataclass
class NavigationConfig:
    """Settings of one navigation run (command-line flags; not part of a run's config)."""

    directions: int = 10  # K
    steps: int = 1000
    batch_size: int = 32
    lr: float = 1e-3
    seed: int = 0
    sigma: float = 1.0  # noise level of the diffusion renderer's one-step estimate
    shift_scale: float = 3.0  # s = shift_scale x the codes' mean per-dimension std
    min_shift: float = 0.2  # |eps| >= min_shift x s, so every shift is visible
    shift_weight: float = 0.25  # lambda: weight of the shift regression
    width: int = 32  # reconstructor base width
    stats_images: int = 512  # images whose codes set s

    def check(self) -> None:
        """One FdaeError naming the flag for values that cannot work."""
        for key, flag, low in (("directions", "--directions", 2), ("steps", "--steps", 1),
                               ("batch_size", "--batch-size", 1), ("width", "width", 1),
                               ("stats_images", "stats_images", 2)):
            if int(getattr(self, key)) < low:
                raise FdaeError(f"{flag} must be at least {low}, got {getattr(self, key)}")
        for key, flag in (("lr", "--lr"), ("sigma", "--sigma"), ("shift_scale", "--shift-scale")):
            if not float(getattr(self, key)) > 0:
                raise FdaeError(f"{flag} must be positive, got {getattr(self, key)}")
        if not 0 <= self.min_shift < 1:
            raise FdaeError(f"min_shift must be in [0, 1), got {self.min_shift}")
        if not self.shift_weight >= 0:
            raise FdaeError(f"shift_weight must be >= 0, got {self.shift_weight}")


# ------------------------------------------------------------------------ rendering
class Renderer:
    """Differentiable images of codes for a frozen method (what the reconstructor sees).

    Diffusion autoencoders: the denoiser's one-step estimate of the clean image from the
    real image noised to `sigma`, conditioned on the code. Full Heun sampling would need
    tens of U-Net calls per image, all kept for the backward pass; one call is cheap to
    backpropagate through and still shows what the code controls (at sigma ~ 1 the
    denoiser must take most of the image from the code). Both images of a pair share the
    noise, so they differ by the code alone. VAEs: the decoder's Bernoulli means."""

    def __init__(self, method: Method, sigma: float = 1.0):
        if isinstance(method, DiffusionAutoencoder):
            self.kind = "diffusion"
        elif isinstance(method, GaussianVAE):
            self.kind = "vae"
        else:
            name = getattr(getattr(method, "cfg", None), "name", type(method).__name__)
            raise FdaeError(f"method {name!r} ({type(method).__name__}) cannot be navigated: navigation needs a "
                            f"diffusion autoencoder (e.g. diffae, fdae, encdiff) or a VAE, whose codes decode to "
                            f"images; use a run of one of those methods")
        self.method, self.sigma = method, float(sigma)

    def noise(self, images: Tensor, generator: torch.Generator) -> Tensor | None:
        """The batch's noise (drawn on the CPU from `generator`, so seeds agree across devices)."""
        if self.kind != "diffusion":
            return None
        return torch.randn(images.shape, generator=generator).to(images.device)

    def __call__(self, codes: Tensor, images: Tensor, noise: Tensor | None) -> Tensor:
        """Images (B, C, H, W) in about [-1, 1] of codes (B, d); `images`: whose codes they are."""
        m = self.method
        if self.kind == "vae":
            return torch.sigmoid(m.decoder(codes).float()) * 2 - 1
        sigma = torch.full((codes.shape[0],), self.sigma, device=codes.device)
        x = images.float() + self.sigma * noise
        return m.denoise(x, sigma, m.condition_from_flat(codes))


@contextlib.contextmanager
def frozen(method: nn.Module) -> Iterator[None]:
    """No parameter of `method` takes part in autograd (eval mode); flags restored after."""
    flags = [(p, p.requires_grad) for p in method.parameters()]
    was = method.training
    method.requires_grad_(False)
    method.eval()
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        method.train(was)


# ------------------------------------------------------------------------ the navigator
class Reconstructor(nn.Module):
    """A small CNN on an image pair (2C channels): K logits (which direction) and one
    scalar (the shift over s). A 4x4 pooled map keeps where the change happened."""

    def __init__(self, channels: int, directions: int, width: int = 32):
        super().__init__()
        w = width
        self.features = nn.Sequential(
            nn.Conv2d(2 * channels, w, 3, 1, 1), nn.SiLU(),
            nn.Conv2d(w, w, 4, 2, 1), nn.SiLU(),
            nn.Conv2d(w, 2 * w, 4, 2, 1), nn.SiLU(),
            nn.Conv2d(2 * w, 2 * w, 4, 2, 1), nn.SiLU(),
            nn.AdaptiveAvgPool2d(4), nn.Flatten(),
        )
        self.head = nn.Sequential(nn.Linear(2 * w * 16, 4 * w), nn.SiLU(), nn.Linear(4 * w, directions + 1))

    def forward(self, pair: Tensor) -> tuple[Tensor, Tensor]:
        out = self.head(self.features(pair))
        return out[:, :-1], out[:, -1]


class Navigator(nn.Module):
    """K directions in a d-dimensional code space (rows of `directions`, used unit
    length) and the reconstructor that recognises them; `shift` = s, the largest shift."""

    def __init__(self, code_dim: int, directions: int, channels: int, shift: float = 1.0, width: int = 32):
        super().__init__()
        self.spec = {"code_dim": int(code_dim), "directions": int(directions), "channels": int(channels),
                     "width": int(width)}
        init = torch.randn(code_dim, directions)
        if directions <= code_dim:  # start orthonormal: K distinct directions
            init = torch.linalg.qr(init).Q
        self.directions = nn.Parameter(init.T.contiguous())
        self.reconstructor = Reconstructor(channels, directions, width)
        self.register_buffer("shift", torch.tensor(float(shift)))
        self.meta: dict[str, Any] = {}

    def unit_directions(self) -> Tensor:
        """(K, d) rows of unit length (the scale of a direction is the shift's job)."""
        return self.directions / self.directions.norm(dim=1, keepdim=True).clamp_min(1e-12)

    def axes(self, codes: Tensor, values: int = 7) -> list[TraversalAxis]:
        """One `TraversalAxis` per direction ("dir 1", ...), for `fdae.viz`'s traversals or
        any caller: codes are moved so their projection on the unit direction takes each
        value, here that of the sample's mean code plus linspace(-s, s)."""
        mean = codes.detach().float().mean(0)
        unit = self.unit_directions().detach().to(mean.device)
        s = float(self.shift)
        offsets = torch.linspace(-s, s, values)
        return [TraversalAxis(f"dir {k + 1}", unit[k], float(mean @ unit[k]) + offsets)
                for k in range(unit.shape[0])]

    def check_fits(self, codes: Tensor, channels: int, where: str = "RUN_DIR") -> None:
        """One FdaeError when this navigator was trained for other codes or images."""
        d, c = self.spec["code_dim"], self.spec["channels"]
        if codes.shape[-1] != d or channels != c:
            raise FdaeError(f"{where}/{FILE} was trained for {d}-dimensional codes of {c}-channel images, but this "
                            f"run has {codes.shape[-1]}-dimensional codes of {channels}-channel images; rerun "
                            f"`fdae navigate {where}`")


# ------------------------------------------------------------------------ training
def _images(dataset: Any, n: int, generator: torch.Generator, device: torch.device) -> Tensor:
    """n training images in [-1, 1]: `sample_batch` exists on every fdae dataset (factor
    grids and image folders alike); drawn on the CPU so a seed gives the same batch anywhere."""
    return dataset.sample_batch(n, generator, "cpu")[0].to(device)


@torch.no_grad()
def code_scale(method: Method, dataset: Any, n: int, generator: torch.Generator, device: torch.device,
               chunk: int = 128) -> float:
    """The codes' mean per-dimension std over n images: trained encoders follow no fixed
    prior, so shifts are measured in the codes' own spread."""
    codes = torch.cat([method.encode(_images(dataset, min(chunk, n - i), generator, device))
                       for i in range(0, n, chunk)])
    scale = float(codes.float().std(0).mean())
    if not math.isfinite(scale) or scale <= 0:
        raise FdaeError(f"the codes of this run do not vary over {n} images (mean std {scale}); navigation needs "
                        f"a trained encoder whose codes differ between images; train the run longer")
    return scale


def train_navigation(method: Method, dataset: Any, directions: int = 10, steps: int = 1000, batch_size: int = 32,
                     lr: float = 1e-3, seed: int = 0, *, device: torch.device | str | None = None,
                     log: Callable[[int, dict[str, float]], None] | None = None, log_every: int = 0,
                     **options: Any) -> tuple[Navigator, dict[str, list[float]]]:
    """Train a `Navigator` on a frozen `method` (no gradient reaches its parameters).

    Each step: real images and their codes; k ~ U{K}; eps with |eps| ~ U[min_shift s, s]
    and a random sign; the reconstructor sees render(code) and render(code + eps d_k)
    and is scored by cross-entropy(k) + shift_weight |eps_hat - eps| / s. Adam updates
    the directions and the reconstructor. `options`: the other `NavigationConfig`
    fields. Every draw comes from one generator seeded with `seed` (and the weights
    start from `seed`), so a seed gives the same result. History: per-step "loss",
    "accuracy" (of k; chance 1/K) and "shift_error" (|eps_hat - eps| / s)."""
    cfg = NavigationConfig(directions=directions, steps=steps, batch_size=batch_size, lr=lr, seed=seed, **options)
    cfg.check()
    renderer = Renderer(method, cfg.sigma)
    device = torch.device(device) if device is not None else next(method.parameters()).device
    gen = torch.Generator().manual_seed(cfg.seed)
    with frozen(method):
        s = cfg.shift_scale * code_scale(method, dataset, cfg.stats_images, gen, device)
        probe = _images(dataset, 1, gen, device)
        code_dim = method.encode(probe).shape[1]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            navigator = Navigator(code_dim, cfg.directions, probe.shape[1], s, cfg.width).to(device)
        navigator.meta = {"config": asdict(cfg)}
        opt = torch.optim.Adam(navigator.parameters(), lr=cfg.lr)
        history: dict[str, list[float]] = {"loss": [], "accuracy": [], "shift_error": []}
        for step in range(cfg.steps):
            terms = _step(navigator, renderer, opt, _images(dataset, cfg.batch_size, gen, device), gen, cfg, s)
            for key, value in terms.items():
                history[key].append(value)
            if log is not None and log_every and ((step + 1) % log_every == 0 or step + 1 == cfg.steps):
                log(step + 1, terms)
    return navigator, history


def _step(navigator: Navigator, renderer: Renderer, opt: torch.optim.Optimizer, images: Tensor,
          gen: torch.Generator, cfg: NavigationConfig, s: float) -> dict[str, float]:
    """One optimizer step of the navigator; the step's loss, accuracy and shift error."""
    device, b = images.device, images.shape[0]
    codes = renderer.method.encode(images)
    k = torch.randint(cfg.directions, (b,), generator=gen)
    size = cfg.min_shift + (1 - cfg.min_shift) * torch.rand(b, generator=gen)  # |eps| / s
    sign = torch.randint(0, 2, (b,), generator=gen) * 2 - 1
    target = (size * sign).to(device)  # eps / s
    k = k.to(device)
    noise = renderer.noise(images, gen)
    opt.zero_grad(set_to_none=True)
    with torch.no_grad():
        base = renderer(codes, images, noise)
    shifted = renderer(codes + (target * s)[:, None] * navigator.unit_directions()[k], images, noise)
    logits, predicted = navigator.reconstructor(torch.cat([base, shifted], 1))
    shift_error = (predicted - target).abs().mean()
    loss = F.cross_entropy(logits, k) + cfg.shift_weight * shift_error
    loss.backward()
    opt.step()
    accuracy = (logits.argmax(1) == k).float().mean()
    return {"loss": float(loss.detach()), "accuracy": float(accuracy), "shift_error": float(shift_error.detach())}


def final_accuracy(history: dict[str, list[float]]) -> float:
    """Direction accuracy over the last tenth of the steps (one step's batch is noisy)."""
    acc = history["accuracy"]
    tail = acc[-max(1, len(acc) // 10):]
    return float(sum(tail) / len(tail)) if tail else float("nan")


# ------------------------------------------------------------------------ save / load
def navigation_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / FILE


def save_navigation(run_dir: str | Path, navigator: Navigator, meta: dict[str, Any] | None = None) -> Path:
    """Write RUN_DIR/navigation.pt atomically (a reader never sees half a file): the
    navigator's tensors, its shape and plain metadata only, with a checksum."""
    from fdae.train.checkpoint import payload_digest

    meta = {**navigator.meta, **(meta or {})}
    try:
        meta = json.loads(json.dumps(meta))  # plain values only: loadable with weights_only
    except (TypeError, ValueError) as err:
        raise ValueError(f"navigation metadata must be plain values (numbers, strings, lists, dicts): {err}") from None
    state = {key: value.detach().cpu() for key, value in navigator.state_dict().items()}
    data = {"format": FORMAT, "version": VERSION, "spec": dict(navigator.spec), "state": state, "meta": meta}
    data["integrity"] = payload_digest(data)[0]
    path = navigation_path(run_dir)
    with replacing(path, f"rerun `fdae navigate {run_dir}` once it is fixed") as tmp:
        with open(tmp, "wb") as fh:
            torch.save(data, fh)
            fh.flush()
            os.fsync(fh.fileno())
    return path


def load_navigation(run_dir: str | Path, device: torch.device | str = "cpu") -> Navigator | None:
    """The navigator saved in RUN_DIR/navigation.pt (its metadata in `.meta`), None when
    there is none, or one FdaeError saying to rerun `fdae navigate RUN_DIR`."""
    from fdae.train.checkpoint import payload_digest

    path = navigation_path(run_dir)
    if not path.is_file():
        return None
    fix = f"rerun `fdae navigate {run_dir}` to write it again"
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError as err:
        raise FdaeError(f"cannot read {path}: {err.strerror}") from None
    if head != b"PK\x03\x04":  # torch.save writes zip archives; anything else is never unpickled
        raise FdaeError(f"{path} is corrupt or not a navigation file (not a zip archive); {fix}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise FdaeError(f"{path} holds Python objects other than tensors and plain values, which fdae refuses to "
                        f"load (nothing in it was run); {fix}") from None
    except Exception:  # torch raises many types for damaged archives
        raise FdaeError(f"{path} is truncated or corrupt and cannot be read; {fix}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise FdaeError(f"{path} is not an fdae navigation file (no '{FORMAT}' tag); {fix}")
    if int(data.get("version", -1)) > VERSION:
        raise FdaeError(f"{path} has format version {data.get('version')}, newer than this fdae understands "
                        f"({VERSION}); upgrade fdae or {fix}")
    digest = data.pop("integrity", None)
    if digest != payload_digest(data)[0]:
        raise FdaeError(f"{path} does not match the checksum written with it (it was changed on disk); {fix}")
    try:
        spec = data["spec"]
        navigator = Navigator(spec["code_dim"], spec["directions"], spec["channels"], width=spec["width"])
        navigator.load_state_dict(data["state"])
    except (KeyError, TypeError, RuntimeError) as err:
        why = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
        raise FdaeError(f"{path} does not hold a complete navigator ({why}); {fix}") from None
    navigator.meta = dict(data.get("meta") or {})
    return navigator.to(torch.device(device)).eval()


# ------------------------------------------------------------------------ figure
@torch.no_grad()
def navigation_figure(method: Method, navigator: Navigator, images: Tensor, steps: int | None = None,
                      seed: int = 0, values: int = 7, chunk: int = 256) -> tuple[np.ndarray, list[str], list[str]]:
    """For each image a block of rows, one per direction: the input, then the image
    decoded with its code shifted by eps along the direction, eps = linspace(-s, s)
    (as in training: relative to the image's own code). Diffusion methods decode every
    cell from one shared noise, so only the code changes. Returns the grid, its row
    labels and its column labels."""
    from fdae.viz.grids import tile, to_uint8

    method.eval()
    codes = method.encode(images)
    unit = navigator.unit_directions().to(codes.device)
    s = float(navigator.shift)
    eps = torch.linspace(-s, s, values, device=codes.device)
    k_dirs = unit.shape[0]
    moved = codes[:, None, None] + eps[None, None, :, None] * unit[None, :, None]  # (B, K, V, d)
    flat = moved.reshape(-1, codes.shape[1])
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn((1, *images.shape[1:]), generator=g).to(images.device)
    decoded = torch.cat([method.decode_codes(part, (part.shape[0], *images.shape[1:]), steps, noise=noise)
                         for part in flat.split(chunk)])
    out, src = to_uint8(decoded), to_uint8(images)
    rows, labels = [], []
    for b in range(codes.shape[0]):
        for k in range(k_dirs):
            start = (b * k_dirs + k) * values
            rows.append([src[b] if k == 0 else None, *out[start:start + values]])
            labels.append(f"image {b + 1}: dir {k + 1}" if k == 0 else f"dir {k + 1}")
    columns = ["input", *[f"{0.0 if abs(float(v)) < 1e-6 * s else float(v):+.3g}" for v in eps]]
    return tile(rows), labels, columns


def write_navigation_figure(method: Method, navigator: Navigator, images: Tensor, path: str | Path,
                            steps: int | None = None, seed: int = 0, sampler: str = "") -> Path:
    """`navigation_figure` with its caption and labels, saved as a PNG at `path`."""
    from fdae.viz.grids import labelled, save_png

    navigator.check_fits(method.encode(images[:1]), images.shape[1])
    grid, rows, cols = navigation_figure(method, navigator, images, steps, seed)
    size = images.shape[-1]
    meta = navigator.meta
    k = navigator.spec["directions"]
    trained = []
    if "steps" in meta.get("config", {}):
        trained.append(f"{meta['config']['steps']} steps")
    if "accuracy" in meta:
        trained.append(f"direction accuracy {meta['accuracy']:.2f}, chance {1 / k:.2f}")
    if "run_step" in meta:
        trained.append(f"on the run's step-{meta['run_step']} weights")
    title = [f"Navigation: {k} directions found without labels (Voynov & Babenko 2020)"
             + (f"; {', '.join(trained)}" if trained else ""),
             f"each row: the image's code shifted by eps along one direction, s = {float(navigator.shift):.3g} "
             f"(codes' mean std x shift scale)" + (f"; {sampler}" if sampler else "")]
    return save_png(labelled(grid, size, title, col_labels=cols, row_labels=rows, scale=max(2, 128 // size)), path)
