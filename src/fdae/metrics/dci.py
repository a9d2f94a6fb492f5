"""DCI: disentanglement, completeness, informativeness (Eastwood & Williams, 2018).

As disentanglement_lib computes it: one gradient-boosted tree classifier per factor
(sklearn defaults, 100 stages, learning rate 0.1) predicts the factor from all codes;
the importance matrix R[d, k] = |feature_importances_| of classifier k;

    disentanglement = sum_d rho_d (1 - H_K(R[d, :])),  rho_d = sum_k R[d, k] / sum R
    completeness    = sum_k rho_k (1 - H_D(R[:, k])),  rho_k = sum_d R[d, k] / sum R

with entropies in base K (factors) and D (codes) of each row / column normalised to a
distribution (after adding 1e-11, as the reference does); informativeness is the mean
accuracy of the classifiers on the train and test sets.

Difference from disentanglement_lib, on purpose: the classifiers get `random_state`
(the reference gives none, so its numbers change slightly from run to run; with
sklearn's defaults the seed only breaks ties between equally good splits).

`mode="fast"` (never the default, always recorded in the result as `mode`) swaps the
classifier for scikit-learn's histogram gradient boosting (the same 100 stages,
learning rate and depth-3 trees; features binned into 255 quantiles) and takes each code's importance as the total split gain it earns, the
histogram counterpart of the impurity decrease that `feature_importances_` sums. It
is many times faster on large code sets; BENCHMARKS.md ("Fast DCI") measures its speed
and how far its D lies from the exact one on trained representations.
"""

from __future__ import annotations

import os

import numpy as np

from fdae.errors import FdaeError
from fdae.metrics.utils import check_pair, seed_of

ENTROPY_EPS = 1e-11
BACKEND = "threading"


def _normalised_entropy(p: np.ndarray, base: int) -> np.ndarray:
    """Entropy (base `base`) of each row of a non-negative matrix, rows normalised."""
    p = p + ENTROPY_EPS
    p = p / p.sum(axis=1, keepdims=True)
    return -(p * np.log(p)).sum(axis=1) / np.log(base)


def disentanglement_per_code(importance_matrix: np.ndarray) -> np.ndarray:
    r = np.asarray(importance_matrix, dtype=np.float64)
    return 1.0 - _normalised_entropy(r, r.shape[1])


def completeness_per_factor(importance_matrix: np.ndarray) -> np.ndarray:
    r = np.asarray(importance_matrix, dtype=np.float64)
    return 1.0 - _normalised_entropy(r.T, r.shape[0])


def _weights(r: np.ndarray, axis: int) -> np.ndarray:
    if r.sum() == 0.0:
        r = np.ones_like(r)
    return r.sum(axis=axis) / r.sum()


def disentanglement_from_importance(importance_matrix) -> float:
    """Disentanglement of an importance matrix of shape (n_codes, n_factors)."""
    r = np.asarray(importance_matrix, dtype=np.float64)
    _check_importance(r)
    return float(np.sum(disentanglement_per_code(r) * _weights(r, axis=1)))


def completeness_from_importance(importance_matrix) -> float:
    """Completeness of an importance matrix of shape (n_codes, n_factors)."""
    r = np.asarray(importance_matrix, dtype=np.float64)
    _check_importance(r)
    return float(np.sum(completeness_per_factor(r) * _weights(r, axis=0)))


def _check_importance(r: np.ndarray) -> None:
    if r.ndim != 2 or r.shape[0] < 2 or r.shape[1] < 2:
        raise FdaeError(
            f"importance matrix has shape {r.shape}; DCI needs at least 2 codes and 2 factors "
            "(entropies are taken in base n_factors and base n_codes)."
        )
    if np.any(r < 0) or not np.all(np.isfinite(r)):
        raise FdaeError("importance matrix must be finite and non-negative.")


def _fit_one(x_train, y_train, x_test, y_test, learning_rate, seed):
    from sklearn.ensemble import GradientBoostingClassifier

    model = GradientBoostingClassifier(learning_rate=learning_rate, random_state=seed)
    model.fit(x_train, y_train)
    importance = np.abs(model.feature_importances_)
    acc_train = float(np.mean(model.predict(x_train) == y_train))
    acc_test = float(np.mean(model.predict(x_test) == y_test))
    return importance, acc_train, acc_test


def _fit_one_fast(x_train, y_train, x_test, y_test, learning_rate, seed):
    """Histogram boosting; importance = split gain summed per feature over all trees."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    # The exact classifier's trees: depth 3 (at most 8 leaves), leaves of any size.
    model = HistGradientBoostingClassifier(learning_rate=learning_rate, max_iter=100, max_depth=3, max_leaf_nodes=8,
                                           min_samples_leaf=1, early_stopping=False, random_state=seed)
    model.fit(x_train, y_train)
    importance = np.zeros(x_train.shape[1], dtype=np.float64)
    # The fitted trees' node arrays (feature, gain, leaf flag) are the record of every
    # split; scikit-learn keeps them in `_predictors` (SHAP's tree explainer reads the same).
    predictors = getattr(model, "_predictors", None)
    if predictors is None:  # pragma: no cover - a future scikit-learn without node arrays
        raise FdaeError("this scikit-learn's HistGradientBoostingClassifier exposes no tree nodes; "
                        "use the exact DCI (dci mode 'exact')")
    for stage in predictors:
        for tree in stage:
            nodes = tree.nodes[~tree.nodes["is_leaf"].astype(bool)]
            np.add.at(importance, nodes["feature_idx"].astype(np.int64), np.maximum(nodes["gain"], 0.0))
    total = importance.sum()
    if total > 0:  # as `feature_importances_`: each classifier's importances sum to 1
        importance /= total
    acc_train = float(np.mean(model.predict(x_train) == y_train))
    acc_test = float(np.mean(model.predict(x_test) == y_test))
    return importance, acc_train, acc_test


MODES = {"exact": _fit_one, "fast": _fit_one_fast}


def default_n_jobs() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def importance_gbt(codes_train, factors_train, codes_test, factors_test, *, random_state=0,
                   learning_rate=0.1, n_jobs=None, mode="exact"):
    """Fit one boosted-tree classifier per factor (in parallel across factors).

    Returns (importance (n_codes, n_factors), train accuracies (k,), test accuracies (k,))."""
    k = factors_train.shape[1]
    seed = seed_of(random_state)
    n_jobs = default_n_jobs() if n_jobs is None else int(n_jobs)
    n_jobs = max(1, min(n_jobs, k))
    jobs = [(codes_train, factors_train[:, j], codes_test, factors_test[:, j], learning_rate, seed) for j in range(k)]
    if mode not in MODES:
        raise FdaeError(f"unknown DCI mode {mode!r}; choose exact (disentanglement_lib's trees) or fast")
    fit = MODES[mode]
    if n_jobs == 1:
        results = [fit(*job) for job in jobs]
    else:
        from joblib import Parallel, delayed

        # Longest first (a classifier costs about one tree per class and stage), so
        # the factors spread evenly over the workers.
        n_classes = [np.unique(factors_train[:, j]).size for j in range(k)]
        order = sorted(range(k), key=lambda j: -(n_classes[j] if n_classes[j] > 2 else 1))
        done = Parallel(n_jobs=n_jobs, backend=BACKEND, batch_size=1)(delayed(fit)(*jobs[j]) for j in order)
        results = [None] * k
        for j, r in zip(order, done):
            results[j] = r
    importance = np.stack([r[0] for r in results], axis=1).astype(np.float64)
    acc_train = np.array([r[1] for r in results])
    acc_test = np.array([r[2] for r in results])
    return importance, acc_train, acc_test


def dci(codes_train, factors_train, codes_test, factors_test, random_state=0, *,
        learning_rate: float = 0.1, n_jobs: int | None = None, mode: str = "exact") -> dict:
    """DCI scores of codes (n, d) against integer factors (n, k).

    random_state: int seed of the boosted trees (the same seed gives the same numbers).
    n_jobs: processes that train the per-factor classifiers (default: all CPU cores).
    mode: "exact" (disentanglement_lib's GradientBoostingClassifier) or "fast".
    Returns a dict with disentanglement, completeness, informativeness_train,
    informativeness_test, importance_matrix ((d, k) numpy array), and the per-factor
    accuracies."""
    ctr, ftr, cte, fte = check_pair(codes_train, factors_train, codes_test, factors_test, min_samples=2, min_dims=2)
    if ftr.shape[1] < 2:
        raise FdaeError("DCI needs at least 2 factors (its entropies are taken in base n_factors).")
    r, acc_train, acc_test = importance_gbt(
        ctr, ftr, cte, fte, random_state=random_state, learning_rate=learning_rate, n_jobs=n_jobs, mode=mode
    )
    return {
        "mode": mode,
        "disentanglement": disentanglement_from_importance(r),
        "completeness": completeness_from_importance(r),
        "informativeness_train": float(np.mean(acc_train)),
        "informativeness_test": float(np.mean(acc_test)),
        "importance_matrix": r,
        "accuracy_train_per_factor": acc_train.tolist(),
        "accuracy_test_per_factor": acc_test.tolist(),
    }
