"""Drawing (codes, factors) from a dataset exactly as disentanglement_lib does.

The random stream. Every draw goes through the dataset's own two calls, in the
reference's order, on the caller's `numpy.random.RandomState`:

    factors = dataset.sample_factors(n, random_state)        # per factor column:
                                                             # random_state.randint(size, size=n)
    obs = dataset.sample_observations_from_factors(factors, random_state)

`sample_observations_from_factors` is always called, even for datasets whose images are
a deterministic function of the factors, because datasets with a nuisance variable
draw from the state there; skipping it would shift everything drawn afterwards.
Batch sizes matter (sampling 16 + 16 rows is not sampling 32 rows), so the reference's
batch sizes are kept: 16 for DCI / MIG / SAP / modularity, 64 per FactorVAE or
BetaVAE vote.

The encoder convention. In fdae, `encode(images)` receives a torch float tensor of shape
(n, C, 64, 64) with values in [-1, 1] (the models' input convention) and returns codes of
shape (n, d) as a numpy array or torch tensor. The observations the datasets return
(numpy (n, 64, 64, C) in [0, 1], as disentanglement_lib returns them) are converted here.
A callable with the attribute `uses_factors = True` is called as
`encode(images, factors=factors)`: only for reference representations such as the
`oracle`, which reads the true factors (it tests the pipeline, not a model).

Encoding is deferred and batched (`encode_batch_size` images per call, default 512)
while the random draws stay in the reference's order and batch sizes; for an encoder
whose output for an image does not depend on the rest of the batch (any model in eval
mode), the codes equal those of per-batch calls.
"""

from __future__ import annotations

from typing import Callable, Iterator

import numpy as np

from fdae.errors import FdaeError

DEFAULT_ENCODE_BATCH = 512


def num_factors(dataset) -> int:
    return len(dataset.factor_sizes)


def observations_to_images(observations, device=None):
    """numpy (n, H, W, C) in [0, 1] -> torch float32 (n, C, H, W) in [-1, 1] on `device`."""
    import torch

    if isinstance(observations, torch.Tensor):
        x = observations.detach().float()
    else:
        x = torch.from_numpy(np.ascontiguousarray(observations, dtype=np.float32))
    if x.ndim == 3:  # (n, H, W) greyscale
        x = x[..., None]
    if x.ndim != 4:
        raise FdaeError(
            f"the dataset returned observations of shape {tuple(x.shape)}; expected (n, H, W, C)."
        )
    x = x.permute(0, 3, 1, 2)
    if device is not None:
        x = x.to(device)
    return (x * 2.0 - 1.0).contiguous()


def _to_numpy_codes(out, n: int) -> np.ndarray:
    try:
        import torch

        if isinstance(out, torch.Tensor):
            out = out.detach().to("cpu")
            if out.dtype not in (torch.float32, torch.float64):
                out = out.float()
            out = out.numpy()
    except ImportError:  # pragma: no cover
        pass
    codes = getattr(out, "codes", out)  # a Representation object carries .codes
    if codes is not out:
        return _to_numpy_codes(codes, n)
    codes = np.asarray(codes)
    if codes.ndim == 1:
        codes = codes[:, None]
    if codes.ndim != 2 or codes.shape[0] != n:
        raise FdaeError(
            f"the encoder returned an array of shape {codes.shape} for {n} images; "
            "encode(images) must return codes of shape (n_images, n_codes)."
        )
    return codes


class Encoder:
    """Calls a user `encode` on observations in chunks; returns numpy codes (n, d)."""

    def __init__(self, encode: Callable, device=None, batch_size: int = DEFAULT_ENCODE_BATCH):
        if not callable(encode):
            raise FdaeError("encode must be a callable taking images (n, C, 64, 64) in [-1, 1].")
        self.encode = encode
        self.device = device
        self.batch_size = max(1, int(batch_size))
        self.uses_factors = bool(getattr(encode, "uses_factors", False))
        self.dim: int | None = None

    def __call__(self, observations, factors: np.ndarray) -> np.ndarray:
        import torch

        n = len(factors)
        parts = []
        with torch.no_grad():
            for start in range(0, n, self.batch_size):
                stop = min(n, start + self.batch_size)
                images = observations_to_images(observations[start:stop], self.device)
                if self.uses_factors:
                    out = self.encode(images, factors=factors[start:stop])
                else:
                    out = self.encode(images)
                codes = _to_numpy_codes(out, stop - start)
                if self.dim is None:
                    self.dim = codes.shape[1]
                elif codes.shape[1] != self.dim:
                    raise FdaeError(
                        f"the encoder returned {codes.shape[1]} codes per image after returning {self.dim}; "
                        "it must return a fixed number of codes."
                    )
                parts.append(codes)
        codes = np.concatenate(parts, axis=0) if len(parts) > 1 else parts[0]
        if not np.all(np.isfinite(codes)):
            raise FdaeError(
                "the encoder returned NaN or infinite codes; the model diverged or was loaded wrongly: "
                "check the checkpoint before evaluating."
            )
        return codes


def as_encoder(encode, device=None, batch_size: int = DEFAULT_ENCODE_BATCH) -> Encoder:
    return encode if isinstance(encode, Encoder) else Encoder(encode, device, batch_size)


def _same_state(a, b) -> bool:
    return a[2] == b[2] and a[3] == b[3] and a[4] == b[4] and np.array_equal(a[1], b[1])


def sample_observations(dataset, num: int, random_state, encoder: Encoder) -> tuple[np.ndarray, np.ndarray]:
    """The reference's `sample_observations(num)`: factors for all `num` at once, then
    their observations; returns (codes (num, d), factors (num, k)).

    The observations are requested in chunks when (checked on the first chunk) the
    dataset draws nothing from the random state while rendering; otherwise in one call,
    as the reference does, so the random stream is the same either way."""
    factors = np.asarray(dataset.sample_factors(num, random_state))
    chunk = max(encoder.batch_size, 1)
    if num <= chunk:
        obs = dataset.sample_observations_from_factors(factors, random_state)
        return encoder(obs, factors), factors
    before = random_state.get_state()
    first = dataset.sample_observations_from_factors(factors[:chunk], random_state)
    if _same_state(before, random_state.get_state()):
        parts = [encoder(first, factors[:chunk])]
        for start in range(chunk, num, chunk):
            f = factors[start:start + chunk]
            parts.append(encoder(dataset.sample_observations_from_factors(f, random_state), f))
        return np.concatenate(parts, axis=0), factors
    random_state.set_state(before)
    obs = dataset.sample_observations_from_factors(factors, random_state)
    return encoder(obs, factors), factors


def generate_factor_code(dataset, encoder: Encoder, num_points: int, random_state,
                         batch_size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """The reference's `generate_batch_factor_code`: `num_points` samples drawn in
    batches of `batch_size`; returns (codes (n, d), factors (n, k))."""
    if num_points < 1:
        raise FdaeError(f"need at least 1 sample, got num_points={num_points}.")
    codes_parts, factor_parts = [], []
    pending_obs, pending_f, pending_n = [], [], 0

    def flush():
        nonlocal pending_obs, pending_f, pending_n
        if pending_n:
            f = np.concatenate(pending_f, axis=0)
            obs = np.concatenate([np.asarray(o) for o in pending_obs], axis=0)
            codes_parts.append(encoder(obs, f))
            factor_parts.append(f)
        pending_obs, pending_f, pending_n = [], [], 0

    i = 0
    while i < num_points:
        n = min(num_points - i, batch_size)
        f = np.asarray(dataset.sample_factors(n, random_state))
        obs = dataset.sample_observations_from_factors(f, random_state)
        pending_obs.append(obs)
        pending_f.append(f)
        pending_n += n
        if pending_n >= encoder.batch_size:
            flush()
        i += n
    flush()
    return np.concatenate(codes_parts, axis=0), np.concatenate(factor_parts, axis=0)


def _votes_per_call(encoder: Encoder, images_per_vote: int) -> int:
    return max(1, encoder.batch_size // max(1, images_per_vote))


def factor_vae_batches(dataset, encoder: Encoder, batch_size: int, num_points: int,
                       random_state) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """FactorVAE votes in the reference's order: per vote, a factor index
    (`random_state.randint(num_factors)`), `batch_size` factors with that factor fixed to
    the first row's value, their observations. Yields (factor indices (v,),
    codes (v, batch_size, d)) for groups of v votes encoded together."""
    k = num_factors(dataset)
    per_call = _votes_per_call(encoder, batch_size)
    done = 0
    while done < num_points:
        v = min(per_call, num_points - done)
        idx = np.empty(v, dtype=np.int64)
        obs, fac = [], []
        for t in range(v):
            fi = random_state.randint(k)
            f = np.array(dataset.sample_factors(batch_size, random_state))
            f[:, fi] = f[0, fi]
            obs.append(np.asarray(dataset.sample_observations_from_factors(f, random_state)))
            fac.append(f)
            idx[t] = fi
        codes = encoder(np.concatenate(obs, axis=0), np.concatenate(fac, axis=0))
        yield idx, codes.reshape(v, batch_size, -1)
        done += v


def beta_vae_batches(dataset, encoder: Encoder, batch_size: int, num_points: int,
                     random_state) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """BetaVAE votes in the reference's order: per vote, a factor index, two batches of
    factors (the second takes the first's value of that factor), observations of the
    first, then of the second. Yields (factor indices (v,), codes1 (v, b, d),
    codes2 (v, b, d))."""
    k = num_factors(dataset)
    per_call = _votes_per_call(encoder, 2 * batch_size)
    done = 0
    while done < num_points:
        v = min(per_call, num_points - done)
        idx = np.empty(v, dtype=np.int64)
        obs1, obs2, fac1, fac2 = [], [], [], []
        for t in range(v):
            fi = random_state.randint(k)
            f1 = np.array(dataset.sample_factors(batch_size, random_state))
            f2 = np.array(dataset.sample_factors(batch_size, random_state))
            f2[:, fi] = f1[:, fi]
            obs1.append(np.asarray(dataset.sample_observations_from_factors(f1, random_state)))
            obs2.append(np.asarray(dataset.sample_observations_from_factors(f2, random_state)))
            fac1.append(f1)
            fac2.append(f2)
            idx[t] = fi
        codes = encoder(np.concatenate(obs1 + obs2, axis=0), np.concatenate(fac1 + fac2, axis=0))
        codes = codes.reshape(2, v, batch_size, -1)
        yield idx, codes[0], codes[1]
        done += v
