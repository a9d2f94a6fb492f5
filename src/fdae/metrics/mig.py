"""Mutual Information Gap (Chen et al., 2018), as disentanglement_lib computes it.

Each code dimension is binned into `num_bins` equal-width histogram bins
(`fdae.metrics.utils.histogram_discretize`, identical to the reference); the mutual
information m[d, k] between binned code d and factor k is taken in nats; for each
factor, the gap between the largest and second largest m[., k] is divided by the
factor's entropy H(k); MIG is the mean over factors.
"""

from __future__ import annotations

import numpy as np

from fdae.errors import FdaeError
from fdae.metrics.utils import check_codes, check_factors, discrete_entropy, discrete_mutual_info, histogram_discretize


def mig_from_discrete(discrete_codes: np.ndarray, factors: np.ndarray) -> dict:
    """MIG of already discrete codes (n, d) (any integer labels) against factors (n, k)."""
    if discrete_codes.shape[1] < 2:
        raise FdaeError(
            f"MIG needs at least 2 code dimensions (it is a gap between the top two), got {discrete_codes.shape[1]}."
        )
    m = discrete_mutual_info(discrete_codes, factors)  # (d, k)
    entropy = discrete_entropy(factors)  # (k,)
    top = np.sort(m, axis=0)[::-1]
    per_factor = (top[0] - top[1]) / entropy
    return {
        "mig": float(np.mean(per_factor)),
        "mig_per_factor": per_factor.tolist(),
        "mutual_information": m,
        "factor_entropy": entropy.tolist(),
    }


def mig(codes, factors, num_bins: int = 20) -> dict:
    """MIG of codes (n, d) against integer factors (n, k); codes binned into num_bins.

    Returns {"mig", "mig_per_factor", "mutual_information" ((d, k) nats),
    "factor_entropy"}."""
    codes = check_codes(codes, "codes", min_samples=2, min_dims=2)
    factors = check_factors(factors, codes.shape[0], "factors")
    return mig_from_discrete(histogram_discretize(codes, num_bins), factors)
