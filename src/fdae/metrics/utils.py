"""Shared helpers of the metrics: input checks, histogram discretisation, discrete
mutual information and entropy, all vectorised numpy.

Conventions used by every metric in `fdae.metrics`:
- codes are float arrays of shape (n_samples, n_codes);
- factors are integer arrays of shape (n_samples, n_factors) (factor *indices*);
- mutual information and entropy are in nats.
"""

from __future__ import annotations

import math

import numpy as np

from fdae.errors import FdaeError


# --------------------------------------------------------------------------- checks
def check_codes(codes, name: str = "codes", min_samples: int = 1, min_dims: int = 1) -> np.ndarray:
    """Return `codes` as a 2-D floating array, or raise FdaeError naming the fix.

    The dtype of floating input is kept (disentanglement_lib discretises float32 codes
    as float32, and the histogram edges depend on it)."""
    try:
        arr = np.asarray(codes)
    except Exception as err:  # pragma: no cover - exotic input
        raise FdaeError(f"{name} could not be read as an array ({err}); pass a float array of shape (n_samples, n_codes).") from None
    if arr.ndim != 2:
        raise FdaeError(
            f"{name} has shape {arr.shape}; expected a 2-D array (n_samples, n_codes): "
            "flatten each sample's representation into one row."
        )
    if arr.dtype.kind in "biu":
        arr = arr.astype(np.float64)
    elif arr.dtype.kind != "f":
        raise FdaeError(f"{name} has dtype {arr.dtype}; pass a float array of shape (n_samples, n_codes).")
    if arr.shape[0] < min_samples:
        raise FdaeError(
            f"{name} has {arr.shape[0]} samples but this metric needs at least {min_samples}; "
            "draw more samples (num_train / num_test)."
        )
    if arr.shape[1] < min_dims:
        raise FdaeError(
            f"{name} has {arr.shape[1]} code dimension(s) but this metric needs at least {min_dims}; "
            "evaluate a representation with more dimensions."
        )
    if not np.all(np.isfinite(arr)):
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        raise FdaeError(
            f"{name} contains {bad} NaN or infinite value(s); the encoder diverged or the input "
            "was wrong: check the model (and its checkpoint) before evaluating."
        )
    return arr


def check_factors(factors, n_samples: int, name: str = "factors", min_values: int = 2) -> np.ndarray:
    """Return `factors` as an int64 (n, k) array; each factor must take >= min_values values."""
    arr = np.asarray(factors)
    if arr.ndim == 1:
        raise FdaeError(f"{name} has shape {arr.shape}; expected (n_samples, n_factors): use factors[:, None] for a single factor.")
    if arr.ndim != 2:
        raise FdaeError(f"{name} has shape {arr.shape}; expected a 2-D integer array (n_samples, n_factors).")
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise FdaeError(f"{name} holds non-integer values; pass factor indices (integers), not factor values.")
        arr = arr.astype(np.int64)
    elif arr.dtype.kind in "biu":
        arr = arr.astype(np.int64, copy=False)
    else:
        raise FdaeError(f"{name} has dtype {arr.dtype}; pass integer factor indices.")
    if arr.shape[0] != n_samples:
        raise FdaeError(
            f"{name} has {arr.shape[0]} samples but the codes have {n_samples}; pass codes and factors of the same samples."
        )
    if arr.shape[1] < 1:
        raise FdaeError(f"{name} has no factor columns; pass at least one factor.")
    if min_values > 1:
        counts = num_values(arr)
        for j, c in enumerate(counts):
            if c < min_values:
                raise FdaeError(
                    f"{name} column {j} takes only {c} value(s) over {n_samples} samples; a factor must vary: "
                    "drop constant factors or draw more samples."
                )
    return arr


def check_pair(codes_train, factors_train, codes_test, factors_test, *, min_samples: int = 2, min_dims: int = 1):
    """Check a train/test split of (codes, factors); returns the four arrays."""
    ctr = check_codes(codes_train, "codes_train", min_samples=min_samples, min_dims=min_dims)
    ftr = check_factors(factors_train, ctr.shape[0], "factors_train")
    cte = check_codes(codes_test, "codes_test", min_samples=1, min_dims=min_dims)
    fte = check_factors(factors_test, cte.shape[0], "factors_test", min_values=1)
    if cte.shape[1] != ctr.shape[1]:
        raise FdaeError(
            f"codes_test has {cte.shape[1]} dimensions but codes_train has {ctr.shape[1]}; "
            "encode both sets with the same representation."
        )
    if fte.shape[1] != ftr.shape[1]:
        raise FdaeError(
            f"factors_test has {fte.shape[1]} factors but factors_train has {ftr.shape[1]}; "
            "use the same dataset for both sets."
        )
    return ctr, ftr, cte, fte


def as_random_state(random_state) -> np.random.RandomState:
    """An int seed or a RandomState -> a RandomState (the object itself is used, not copied)."""
    if isinstance(random_state, np.random.RandomState):
        return random_state
    if random_state is None or isinstance(random_state, (int, np.integer)):
        return np.random.RandomState(random_state)
    raise FdaeError(
        f"random_state must be an int seed or numpy.random.RandomState, got {type(random_state).__name__}."
    )


def seed_of(random_state) -> int | None:
    """An int usable as sklearn's random_state (sklearn must not draw from our state)."""
    if isinstance(random_state, np.random.RandomState):
        raise FdaeError("pass an int seed here, not a RandomState")
    return None if random_state is None else int(random_state)


# ------------------------------------------------------------------ discretisation
def histogram_discretize(codes: np.ndarray, num_bins: int = 20) -> np.ndarray:
    """Bin each code dimension separately into `num_bins` equal-width bins.

    Exactly disentanglement_lib's histogram discretizer: the bin edges are
    `np.histogram(x, num_bins)[1]` computed in the codes' own dtype, and each value
    gets `np.digitize(x, edges[:-1])`, i.e. labels 1..num_bins (the maximum falls into
    the last bin). Returns an int64 (n, d) array."""
    codes = np.asarray(codes)
    if num_bins < 1:
        raise FdaeError(f"num_bins must be at least 1, got {num_bins}.")
    out = np.empty(codes.shape, dtype=np.int64)
    # One edge vector per dimension: a loop over dimensions (d is small), each step a
    # vectorised O(n) operation. np.histogram_bin_edges gives the exact edges numpy's
    # histogram uses, so boundary values land in the same bins as the reference.
    for i in range(codes.shape[1]):
        col = codes[:, i]
        edges = np.histogram_bin_edges(col, num_bins)
        out[:, i] = np.digitize(col, edges[:-1])
    return out


def relabel(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map each column of an integer (n, m) array to 0..(values-1).

    Returns (codes (n, m) int64, number of distinct values per column (m,))."""
    labels = np.asarray(labels)
    n, m = labels.shape
    out = np.empty((n, m), dtype=np.int64)
    sizes = np.empty(m, dtype=np.int64)
    for j in range(m):
        uniq, inv = np.unique(labels[:, j], return_inverse=True)
        out[:, j] = inv.reshape(-1)
        sizes[j] = uniq.size
    return out, sizes


def num_values(labels: np.ndarray) -> np.ndarray:
    """Number of distinct values in each column."""
    return relabel(labels)[1]


def discrete_mutual_info(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mutual information (nats) between every column of `a` and every column of `b`.

    a: (n, da) labels, b: (n, db) labels (any integers). Returns (da, db), the value
    sklearn's `mutual_info_score(b[:, j], a[:, i])` gives, computed for all pairs at once
    from one joint histogram."""
    a, sa = relabel(a)
    b, sb = relabel(b)
    n, da = a.shape
    db = b.shape[1]
    amax, bmax = int(sa.max()), int(sb.max())
    # joint index of (pair (i, j), a-value, b-value) for every sample, one bincount.
    pair = (np.arange(da)[:, None] * db + np.arange(db)[None, :]) * (amax * bmax)  # (da, db)
    idx = pair[:, :, None] + (a.T[:, None, :] * bmax) + b.T[None, :, :]  # (da, db, n)
    joint = np.bincount(idx.ravel(), minlength=da * db * amax * bmax).reshape(da, db, amax, bmax)
    joint = joint.astype(np.float64)
    pa = joint.sum(axis=3, keepdims=True)  # (da, db, amax, 1)
    pb = joint.sum(axis=2, keepdims=True)  # (da, db, 1, bmax)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = joint / n * (np.log(joint) + np.log(n) - np.log(pa) - np.log(pb))
    terms = np.where(joint > 0, terms, 0.0)
    mi = terms.sum(axis=(2, 3))
    return np.clip(mi, 0.0, None)


def discrete_entropy(labels: np.ndarray) -> np.ndarray:
    """Entropy (nats) of each column of an integer (n, k) array."""
    lab, sizes = relabel(labels)
    n, k = lab.shape
    smax = int(sizes.max())
    counts = np.bincount((lab + np.arange(k)[None, :] * smax).ravel(), minlength=k * smax).reshape(k, smax)
    p = counts / n
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.where(p > 0, p * np.log(p), 0.0).sum(axis=1)
    return h


def to_builtin(obj):
    """numpy scalars/arrays inside dicts/lists -> plain Python, strict JSON (a non-finite
    float becomes the string 'nan' / 'inf' / '-inf'). Results files and run logs use it."""
    if isinstance(obj, dict):
        return {str(k): to_builtin(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_builtin(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_builtin(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    return obj


def write_json(obj, path) -> None:
    """`obj` as strict JSON (through `to_builtin`), written to a temporary file in the same
    folder and renamed, so a reader never sees half a file."""
    import json
    import os
    from pathlib import Path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as fh:
        json.dump(to_builtin(obj), fh, indent=2)
        fh.write("\n")
    os.replace(tmp, path)
