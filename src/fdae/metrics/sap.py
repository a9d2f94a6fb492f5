"""SAP score (Kumar et al., 2018), as disentanglement_lib computes it.

For every (code dimension d, factor k) a score S[d, k]:
- discrete factors (the reference's setting, `continuous_factors=False`): the test
  accuracy of `LinearSVC(C=0.01, class_weight="balanced")` trained on that single
  code dimension to predict the factor;
- continuous factors: the squared correlation cov(c, y)^2 / (var c var y) (0 for a
  code with variance <= 1e-12), computed for all pairs at once.
SAP = mean over factors of (largest - second largest S[., k]).
"""

from __future__ import annotations

import warnings

import numpy as np

from fdae.metrics.utils import check_pair


def _svc_column(x_train, y_train, x_test, y_test):
    """Test accuracies of one-feature linear SVMs for one code dimension, all factors."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.svm import LinearSVC

    accs = np.empty(y_train.shape[1])
    for j in range(y_train.shape[1]):
        clf = LinearSVC(C=0.01, class_weight="balanced", random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.fit(x_train[:, None], y_train[:, j])
        accs[j] = np.mean(clf.predict(x_test[:, None]) == y_test[:, j])
    return accs


def score_matrix_discrete(codes_train, factors_train, codes_test, factors_test, n_jobs=None) -> np.ndarray:
    """S[d, k]: test accuracy of a linear SVM on code d predicting factor k."""
    from fdae.metrics.dci import default_n_jobs

    d = codes_train.shape[1]
    cols = [(codes_train[:, i], factors_train, codes_test[:, i], factors_test) for i in range(d)]
    n_jobs = default_n_jobs() if n_jobs is None else int(n_jobs)
    if n_jobs > 1 and d > 1:
        from joblib import Parallel, delayed

        # liblinear releases the GIL while it solves, so threads overlap.
        rows = Parallel(n_jobs=min(n_jobs, d), backend="threading")(delayed(_svc_column)(*c) for c in cols)
    else:
        rows = [_svc_column(*c) for c in cols]
    return np.stack(rows, axis=0)


def score_matrix_continuous(codes, factors) -> np.ndarray:
    """S[d, k]: squared correlation of code d and factor k (ddof=1 covariances)."""
    c = codes.astype(np.float64)
    y = factors.astype(np.float64)
    n = c.shape[0]
    cc = c - c.mean(axis=0)
    yc = y - y.mean(axis=0)
    cov = cc.T @ yc / (n - 1)
    var_c = (cc * cc).sum(axis=0) / (n - 1)
    var_y = (yc * yc).sum(axis=0) / (n - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = cov**2 / (var_c[:, None] * var_y[None, :])
    return np.where(var_c[:, None] > 1e-12, s, 0.0)


def sap(codes_train, factors_train, codes_test, factors_test, *, continuous_factors: bool = False,
        n_jobs: int | None = None) -> dict:
    """SAP score of codes (n, d) against integer factors (n, k).

    Returns {"sap", "score_matrix" ((d, k) numpy array)}."""
    ctr, ftr, cte, fte = check_pair(codes_train, factors_train, codes_test, factors_test, min_samples=2, min_dims=2)
    if continuous_factors:
        s = score_matrix_continuous(ctr, ftr)
    else:
        s = score_matrix_discrete(ctr, ftr, cte, fte, n_jobs=n_jobs)
    top = np.sort(s, axis=0)
    return {"sap": float(np.mean(top[-1] - top[-2])), "score_matrix": s}
