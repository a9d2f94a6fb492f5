"""The fast DCI mode: named in its results, close to the exact one, never the default."""

import importlib
import inspect

import numpy as np
import pytest

from fdae.errors import FdaeError
from fdae.metrics.protocol import evaluate

dci_module = importlib.import_module("fdae.metrics.dci")  # the module (fdae.metrics.dci is also the function)


def codes_and_factors(n, mixing, seed):
    rs = np.random.RandomState(seed)
    factors = rs.randint(0, 6, size=(n, 3))
    codes = factors.astype(np.float64) + 0.3 * rs.randn(n, 3)
    codes = codes @ mixing
    return np.concatenate([codes, rs.randn(n, 2)], 1), factors


@pytest.mark.parametrize("mix", ["identity", "rotated"])
def test_fast_d_is_close_to_the_exact_one(mix):
    mixing = np.eye(3) if mix == "identity" else np.array([[1, 0.6, 0], [0, 1, 0.5], [0.4, 0, 1.0]])
    ctr, ftr = codes_and_factors(400, mixing, 0)
    cte, fte = codes_and_factors(200, mixing, 1)
    exact = dci_module.dci(ctr, ftr, cte, fte, random_state=0, n_jobs=1)
    fast = dci_module.dci(ctr, ftr, cte, fte, random_state=0, n_jobs=1, mode="fast")
    assert exact["mode"] == "exact" and fast["mode"] == "fast"
    # second-order gains weigh late, noise-fitting splits more than the exact trees'
    # impurity decreases do: D comes out a little lower on clean codes (0.785 vs 0.877
    # here); BENCHMARKS.md ("Fast DCI") measures the gap on trained representations
    assert abs(fast["disentanglement"] - exact["disentanglement"]) < 0.12
    assert abs(fast["completeness"] - exact["completeness"]) < 0.12
    # the noise codes get (almost) no importance either way
    assert fast["importance_matrix"][3:].sum() < 0.1 * fast["importance_matrix"].sum()
    if mix == "identity":
        assert fast["disentanglement"] > 0.7


def test_exact_stays_the_default_and_unknown_modes_fail():
    assert inspect.signature(dci_module.dci).parameters["mode"].default == "exact"
    assert inspect.signature(evaluate).parameters["dci_mode"].default == "exact"
    ctr, ftr = codes_and_factors(50, np.eye(3), 0)
    with pytest.raises(FdaeError, match="unknown DCI mode"):
        dci_module.dci(ctr, ftr, ctr, ftr, mode="approximate")


def test_fast_importances_are_normalised_per_factor_as_the_exact_ones():
    """Each classifier's importances sum to 1 (as `feature_importances_`), whatever its
    number of classes: raw gains grow with the class count and would weigh factors unequally."""
    rs = np.random.RandomState(0)
    factors = np.stack([rs.randint(0, c, size=200) for c in (2, 4, 8)], 1)
    codes = np.concatenate([factors / np.array([2, 4, 8]) + 0.05 * rs.randn(200, 3), rs.randn(200, 1)], 1)
    for mode in ("exact", "fast"):
        r = dci_module.dci(codes, factors, codes, factors, random_state=0, n_jobs=1, mode=mode)["importance_matrix"]
        assert np.allclose(r.sum(0), 1.0), mode
