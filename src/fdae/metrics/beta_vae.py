"""BetaVAE score (Higgins et al., 2017), as disentanglement_lib computes it (sklearn).

Each vote: a random factor k; two batches of `batch_size` factor samples that share the
value of factor k sample by sample; the feature is the mean over the batch of
|code(x1) - code(x2)|, the label is k. A `LogisticRegression` (sklearn defaults) is
trained on `num_train` votes; train accuracy on those, eval accuracy on `num_eval`
fresh votes drawn after training.

The reference passes its RandomState to the LogisticRegression; with the current
sklearn default solver (lbfgs) the classifier draws nothing from it, so the votes drawn
after training are the same here, where it gets no state.
"""

from __future__ import annotations

import warnings
from typing import Callable

import numpy as np

from fdae.errors import FdaeError
from fdae.metrics.sampling import as_encoder, beta_vae_batches
from fdae.metrics.utils import as_random_state


def _points(dataset, encoder, batch_size, num_points, rs) -> tuple[np.ndarray, np.ndarray]:
    feats, labels = [], []
    for idx, c1, c2 in beta_vae_batches(dataset, encoder, batch_size, num_points, rs):
        feats.append(np.mean(np.abs(c1 - c2), axis=1))
        labels.append(idx)
    return np.concatenate(feats, axis=0).astype(np.float64), np.concatenate(labels)


def beta_vae_score(dataset, encode: Callable, random_state, batch_size: int = 64, num_train: int = 10000,
                   num_eval: int = 5000, *, device=None, encode_batch_size: int = 512) -> dict:
    """BetaVAE score of `encode` on `dataset`; returns {"train_accuracy", "eval_accuracy"}."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    if batch_size < 1 or num_train < 2 or num_eval < 1:
        raise FdaeError(
            f"beta_vae_score needs batch_size >= 1, num_train >= 2 and num_eval >= 1 "
            f"(got {batch_size}, {num_train}, {num_eval})."
        )
    rs = as_random_state(random_state)
    encoder = as_encoder(encode, device, encode_batch_size)
    x_train, y_train = _points(dataset, encoder, batch_size, num_train, rs)
    if np.unique(y_train).size < 2:
        raise FdaeError(
            f"the {num_train} BetaVAE training votes all fixed the same factor; draw more votes (num_train)."
        )
    model = LogisticRegression()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x_train, y_train)
    train_acc = float(np.mean(model.predict(x_train) == y_train))
    x_eval, y_eval = _points(dataset, encoder, batch_size, num_eval, rs)
    eval_acc = float(np.mean(model.predict(x_eval) == y_eval))
    return {"train_accuracy": train_acc, "eval_accuracy": eval_acc}
