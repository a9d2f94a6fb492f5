"""Linear probe: how linearly readable labelled attributes are from the content codes.

The FDAE paper's Market-1501 table: the content codes of every image, reduced by PCA,
a linear classifier per attribute trained on one part of the images, its accuracy on
the held-out rest, averaged over the attributes. Here:

  * codes: the columns of the groups named `content*` (FDAE's content_0..content_{N-1});
    a representation without such groups (Diff-AE's `latent`) is probed whole. The
    groups used are recorded in the result.
  * split: one permutation of the images by `RandomState(random_state)`; the first
    `round(test_fraction * n)` are held out. The same split serves every attribute; an
    image with an unknown value of an attribute (-1) is left out of that attribute only.
  * PCA: fitted on the training images' codes (all attributes share it), to
    `min(pca_dims, n_train - 1, code dims)` dimensions, then standardised.
  * classifier: scikit-learn LogisticRegression (L2, C=1, lbfgs, multinomial for more
    than two classes), `random_state` fixed.
  * per attribute: held-out accuracy and the majority baseline (the accuracy of always
    answering the training split's most frequent class). An attribute with a single
    class in the training split, or no held-out image, is reported as skipped.
  * mean_accuracy: the mean held-out accuracy over the attributes that were scored.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from fdae.errors import FdaeError


def content_columns(groups, dim: int) -> tuple[np.ndarray, list[str]]:
    """Column indices of the `content*` groups (all columns when there are none)."""
    if not groups:
        return np.arange(dim), ["(all codes: no groups)"]
    cols, used, start = [], [], 0
    for name, size in groups:
        if str(name).startswith("content"):
            cols.append(np.arange(start, start + int(size)))
            used.append(str(name))
        start += int(size)
    if start != dim:
        raise FdaeError(f"the groups cover {start} dimensions but the codes have {dim}; pass the model's groups.")
    if not cols:
        return np.arange(dim), [f"(all codes: no content groups among {', '.join(str(n) for n, _ in groups)})"]
    return np.concatenate(cols), used


def linear_probe(codes: Any, labels: Any, groups: Sequence[tuple[str, int]] | None = None, *,
                 names: Sequence[str] | None = None, classes: Sequence[Sequence] | None = None,
                 pca_dims: int = 36, test_fraction: float = 0.25, random_state: int = 0,
                 max_iter: int = 2000) -> dict:
    """Probe `codes` (n, d) for `labels` (n, k) int codes (-1: unknown) or a LabelTable.

    Returns {"probe", "mean_accuracy", "attributes": {name: {...}}, "settings", "groups_used",
    "num_images", "num_train", "num_test", "pca_dims"}."""
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    if hasattr(labels, "values") and hasattr(labels, "names"):  # a LabelTable
        names = names or list(labels.names)
        classes = classes or list(labels.classes)
        labels = labels.values
    codes = np.asarray(codes, dtype=np.float64)
    labels = np.asarray(labels)
    if codes.ndim != 2 or labels.ndim != 2 or len(codes) != len(labels):
        raise FdaeError(f"the probe needs codes (n, d) and labels (n, k) for the same n images; "
                        f"got {codes.shape} and {labels.shape}.")
    if not np.all(np.isfinite(codes)):
        raise FdaeError("the codes contain NaN or infinite values; the model's encoder diverged.")
    if not 0.0 < test_fraction < 1.0:
        raise FdaeError(f"test_fraction must be between 0 and 1 (exclusive), got {test_fraction}.")
    if pca_dims < 1:
        raise FdaeError(f"pca_dims must be at least 1, got {pca_dims}.")
    labels = labels.astype(np.int64)
    n, k = labels.shape
    names = list(names) if names is not None else [f"attribute{j}" for j in range(k)]
    cols, used = content_columns(groups, codes.shape[1])
    x = codes[:, cols]

    rs = np.random.RandomState(random_state)
    perm = rs.permutation(n)
    n_test = int(round(test_fraction * n))
    if n_test < 1 or n - n_test < 2:
        raise FdaeError(f"{n} images are too few to hold out {test_fraction:.0%} and train on the rest; "
                        "label more images.")
    test, train = np.sort(perm[:n_test]), np.sort(perm[n_test:])
    dims = int(min(pca_dims, len(train) - 1, x.shape[1]))
    with np.errstate(invalid="ignore", divide="ignore"):  # constant codes: zero variance ratios
        pca = PCA(n_components=dims, svd_solver="full", random_state=random_state).fit(x[train])
    scaler = StandardScaler().fit(pca.transform(x[train]))
    z = scaler.transform(pca.transform(x))

    attributes: dict[str, dict] = {}
    scored = []
    for j, name in enumerate(names):
        y = labels[:, j]
        tr, te = train[y[train] >= 0], test[y[test] >= 0]
        entry: dict[str, Any] = {"num_train": int(len(tr)), "num_test": int(len(te)),
                                 "num_classes": int(len(np.unique(y[y >= 0])))}
        if classes is not None:
            entry["classes"] = [c if isinstance(c, str) else int(c) for c in classes[j]]
        present = np.unique(y[tr])
        if len(te) == 0 or len(present) < 2:
            entry["skipped"] = ("no held-out image with this attribute known" if len(te) == 0
                                else "a single class among the training images")
            attributes[name] = entry
            continue
        clf = LogisticRegression(max_iter=max_iter, random_state=random_state).fit(z[tr], y[tr])
        majority = np.bincount(y[tr]).argmax()
        entry["accuracy"] = float(np.mean(clf.predict(z[te]) == y[te]))
        entry["majority_baseline"] = float(np.mean(y[te] == majority))
        entry["train_accuracy"] = float(np.mean(clf.predict(z[tr]) == y[tr]))
        attributes[name] = entry
        scored.append(entry["accuracy"])
    if not scored:
        raise FdaeError("no attribute could be probed: each needs at least two classes among the training "
                        "images and one held-out image; label more images.")
    return {
        "probe": "linear",
        "mean_accuracy": float(np.mean(scored)),
        "attributes": attributes,
        "groups_used": used,
        "code_dims_used": int(x.shape[1]),
        "pca_dims": dims,
        "num_images": int(n),
        "num_train": int(len(train)),
        "num_test": int(len(test)),
        "settings": {"pca_dims_requested": int(pca_dims), "test_fraction": float(test_fraction),
                     "random_state": int(random_state), "classifier": "LogisticRegression(C=1, lbfgs)",
                     "standardised": True, "max_iter": int(max_iter)},
    }


def encode_folder(dataset, encode, device=None, batch_size: int = 256, rows: np.ndarray | None = None) -> np.ndarray:
    """Codes (n, d) of the folder's images (`rows`, default all) in row order."""
    from fdae.metrics.sampling import _to_numpy_codes

    out = []
    for part, images in dataset.iter_images(batch_size, device, rows):
        out.append(_to_numpy_codes(encode(images), len(part)))
    return np.concatenate(out, axis=0)


def probe_folder(dataset, encode, groups=None, device=None, batch_size: int = 256, **kwargs) -> dict:
    """The linear probe of `encode` on a labelled image folder (images with at least one
    known attribute)."""
    labels = getattr(dataset, "labels", None)
    if labels is None:
        raise FdaeError(
            f"{getattr(dataset, 'name', 'the dataset')} has no labels.csv: the linear probe needs one in the image "
            "folder (header 'file,ATTRIBUTE,...'; one row per image: its file name, then an integer or string "
            "value per attribute).")
    rows = np.nonzero(np.any(labels.values >= 0, axis=1))[0]
    codes = encode_folder(dataset, encode, device, batch_size, rows)
    out = linear_probe(codes, labels.values[rows], groups, names=labels.names, classes=labels.classes, **kwargs)
    out["dataset"] = {"name": dataset.name, "num_images": len(dataset), "num_labelled": int(len(rows)),
                      "labels_file": str(labels.path), "unmatched_label_rows": len(labels.unmatched)}
    return out


def probe_ground_truth(method, dataset, n: int = 1500, seed: int = 0, batch_size: int = 250) -> float:
    """Mean held-out accuracy of the linear probe of `method`'s codes for the factors of a
    ground-truth dataset: n images drawn with RandomState(seed), the probe's own split and
    classifier seeded the same (Diff-AE's learning test and benchmarks/diffae_probe.py)."""
    import torch

    factors = dataset.sample_factors(n, np.random.RandomState(seed))
    with torch.no_grad():
        codes = np.concatenate([method.encode(dataset.images(factors[i:i + batch_size])).cpu().numpy()
                                for i in range(0, n, batch_size)])
    return linear_probe(codes, factors, groups=method.groups, random_state=seed)["mean_accuracy"]
