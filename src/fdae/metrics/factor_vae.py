"""FactorVAE score (Kim & Mnih, 2018), as disentanglement_lib computes it.

1. Global variances: `num_variance_estimate` observations (one `sample_observations`
   draw), codes, `np.var(codes, axis=0, ddof=1)`.
2. Active dimensions: sqrt(global variance) >= prune_threshold (0.05 in the reference's
   study config; 0 in the FDAE paper protocol).
3. Each vote: a random factor k, `batch_size` samples with factor k fixed, local
   variances (ddof=1) of the codes; the vote goes to the active dimension with the
   smallest local / global variance ratio.
4. Majority-vote classifier (for each dimension, the factor with most votes) from
   `num_train` votes; train accuracy on those votes, eval accuracy on `num_eval` fresh
   votes.

Difference from the reference, on purpose: `num_active_dims` is the number of active
dimensions (the reference reports the length of its boolean mask, i.e. all dimensions).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from fdae.errors import FdaeError
from fdae.metrics.sampling import as_encoder, factor_vae_batches, num_factors, sample_observations
from fdae.metrics.utils import as_random_state


def _votes(dataset, encoder, batch_size, num_points, rs, global_var, active, transform) -> np.ndarray:
    k = num_factors(dataset)
    votes = np.zeros((k, int(active.sum())), dtype=np.int64)
    g = global_var[active]
    for idx, codes in factor_vae_batches(dataset, encoder, batch_size, num_points, rs):
        if transform is not None:
            v, b, d = codes.shape
            codes = transform(codes.reshape(v * b, d)).reshape(v, b, -1)
        local = np.var(codes, axis=1, ddof=1)  # (v, d)
        with np.errstate(divide="ignore", invalid="ignore"):
            argmin = np.argmin(local[:, active] / g[None, :], axis=1)
        np.add.at(votes, (idx, argmin), 1)
    return votes


def factor_vae_score(dataset, encode: Callable, random_state, batch_size: int = 64, num_train: int = 10000,
                     num_eval: int = 5000, num_variance_estimate: int = 10000, prune_threshold: float = 0.05, *,
                     reduce: Callable | None = None, device=None, encode_batch_size: int = 512) -> dict:
    """FactorVAE score of `encode` on `dataset`.

    random_state: an int seed or a numpy RandomState (drawn from in the reference's order).
    reduce: optional post-processing fitted on the variance-estimate codes: a callable
      `reduce(codes) -> transform`, with `transform(codes) -> reduced codes`, applied to
      every vote's codes (the paper protocol's per-group PCA).
    Returns {"train_accuracy", "eval_accuracy", "num_active_dims", "votes_train",
    "votes_eval"}."""
    if batch_size < 2:
        raise FdaeError(f"batch_size must be at least 2 (a variance is taken over each batch), got {batch_size}.")
    if num_variance_estimate < 2:
        raise FdaeError(f"num_variance_estimate must be at least 2, got {num_variance_estimate}.")
    if num_train < 1 or num_eval < 1:
        raise FdaeError(f"num_train and num_eval must be at least 1 vote, got {num_train} and {num_eval}.")
    rs = as_random_state(random_state)
    encoder = as_encoder(encode, device, encode_batch_size)
    codes, _ = sample_observations(dataset, num_variance_estimate, rs, encoder)
    transform = None
    if reduce is not None:
        transform = reduce(codes)
        codes = transform(codes)
    global_var = np.var(codes, axis=0, ddof=1)
    active = np.sqrt(global_var) >= prune_threshold
    if not active.any():
        return {"train_accuracy": 0.0, "eval_accuracy": 0.0, "num_active_dims": 0}
    train_votes = _votes(dataset, encoder, batch_size, num_train, rs, global_var, active, transform)
    classifier = np.argmax(train_votes, axis=0)
    cols = np.arange(train_votes.shape[1])
    train_acc = train_votes[classifier, cols].sum() / train_votes.sum()
    eval_votes = _votes(dataset, encoder, batch_size, num_eval, rs, global_var, active, transform)
    eval_acc = eval_votes[classifier, cols].sum() / eval_votes.sum()
    return {
        "train_accuracy": float(train_acc),
        "eval_accuracy": float(eval_acc),
        "num_active_dims": int(active.sum()),
        "active_dims": np.flatnonzero(active).tolist(),
        "votes_train": train_votes,
        "votes_eval": eval_votes,
    }
