"""Modularity and explicitness (Ridgeway & Mozer, 2018), as disentanglement_lib computes them.

Modularity: m[d, k] = mutual information (nats) between histogram-binned code d and
factor k; per code, 1 - (sum_k m^2 - max_k m^2) / (max_k m^2 (K - 1)), and 0 for a
code with no information; the score is the mean over codes.

Explicitness: codes standardised with the training mean and standard deviation
(ddof=0); per factor a `LogisticRegression()` (sklearn defaults) on all codes; the
macro-averaged one-vs-rest ROC-AUC of its class probabilities on the train and the test
set; the score is the mean over factors. A code dimension with zero training variance
is left unscaled (the reference would divide by zero), and classes missing from one
set are left out of that set's average (the reference would fail).
"""

from __future__ import annotations

import warnings

import numpy as np

from fdae.errors import FdaeError
from fdae.metrics.dci import default_n_jobs
from fdae.metrics.utils import check_pair, discrete_mutual_info, histogram_discretize


def modularity_from_mi(mutual_information) -> float:
    """Modularity of a mutual-information matrix of shape (n_codes, n_factors)."""
    m = np.asarray(mutual_information, dtype=np.float64)
    if m.ndim != 2 or m.shape[1] < 2:
        raise FdaeError(f"modularity needs at least 2 factors (it divides by K - 1); got a matrix of shape {m.shape}.")
    sq = np.square(m)
    top = sq.max(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        score = 1.0 - (sq.sum(axis=1) - top) / (top * (sq.shape[1] - 1.0))
    score = np.where(top == 0.0, 0.0, score)
    return float(np.mean(score))


def _auc_macro(onehot: np.ndarray, proba: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    keep = (onehot.sum(axis=0) > 0) & (onehot.sum(axis=0) < onehot.shape[0])
    if not keep.any():
        return float("nan")
    return float(roc_auc_score(onehot[:, keep], proba[:, keep], average="macro"))


def explicitness_per_factor(x_train, y_train, x_test, y_test) -> tuple[float, float]:
    """(train, test) macro ROC-AUC of a logistic regression predicting one factor."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = LogisticRegression().fit(x_train, y_train)
    classes = clf.classes_
    p_train = clf.predict_proba(x_train)
    p_test = clf.predict_proba(x_test)
    onehot_train = (y_train[:, None] == classes[None, :]).astype(np.int64)
    onehot_test = (y_test[:, None] == classes[None, :]).astype(np.int64)
    return _auc_macro(onehot_train, p_train), _auc_macro(onehot_test, p_test)


def modularity_explicitness(codes_train, factors_train, codes_test, factors_test, num_bins: int = 20, *,
                            n_jobs: int | None = None) -> dict:
    """Modularity (on the training codes) and explicitness (train and test).

    Returns {"modularity", "explicitness_train", "explicitness_test",
    "mutual_information" ((d, k) nats), "explicitness_*_per_factor"}."""
    ctr, ftr, cte, fte = check_pair(codes_train, factors_train, codes_test, factors_test, min_samples=2)
    if ftr.shape[1] < 2:
        raise FdaeError("modularity needs at least 2 factors (it divides by K - 1).")
    mi = discrete_mutual_info(histogram_discretize(ctr, num_bins), ftr)
    mean = ctr.mean(axis=0)
    std = ctr.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    xtr = (ctr - mean) / std
    xte = (cte - mean) / std
    k = ftr.shape[1]
    n_jobs = min(default_n_jobs() if n_jobs is None else int(n_jobs), k)
    jobs = [(xtr, ftr[:, j], xte, fte[:, j]) for j in range(k)]
    if n_jobs > 1:
        from joblib import Parallel, delayed

        per = Parallel(n_jobs=n_jobs, backend="threading")(delayed(explicitness_per_factor)(*job) for job in jobs)
    else:
        per = [explicitness_per_factor(*job) for job in jobs]
    per = np.array(per)
    return {
        "modularity": modularity_from_mi(mi),
        "explicitness_train": float(np.nanmean(per[:, 0])),
        "explicitness_test": float(np.nanmean(per[:, 1])),
        "explicitness_train_per_factor": per[:, 0].tolist(),
        "explicitness_test_per_factor": per[:, 1].tolist(),
        "mutual_information": mi,
    }
