"""`evaluate`: every metric of a representation on a dataset, under a named protocol.

protocol="dlib" (the standard one, disentanglement_lib's study configs):
  each metric starts from its own `RandomState(seed)`, as the reference runs each metric
  as a separate evaluation with `evaluation.random_seed`;
  DCI / MIG / SAP / modularity: `num_train` (10,000) then `num_test` (5,000) samples in
  batches of 16 (MIG uses the first set only); 20 histogram bins; SAP on discrete
  factors; FactorVAE: batch 64, `num_train` variance samples, `num_train` training votes,
  `num_test` eval votes, prune threshold 0.05; BetaVAE: batch 64, `num_train` /
  `num_test` votes. Because DCI, MIG, SAP and modularity draw the same samples from the
  same seed, they are drawn (and encoded) once and shared: the numbers are the same.

protocol="paper" (FDAE's published numbers, official code `evaluate_diffusion.py`):
  the representation's named groups (FDAE: N content codes, N mask codes) are each
  reduced by PCA to 36 // (2N) dimensions, the official formula, given `concepts=N`
  (methods expose it as `paper_concepts`); FDAE's E+G ablation (N = 1, one content
  group, no mask codes) thus keeps 18 of its group's dimensions, where the official
  code, written for 2N groups, crashes. Without `concepts` (representations that are not
  FDAE's), each of the n groups keeps `paper_dims // n`. A group with fewer dimensions
  keeps all of them;
  DCI: same samples as above, PCA fitted on the training codes, GBT learning rate 0.1;
  FactorVAE: PCA fitted on the variance-estimate codes and applied to every vote,
  prune threshold 0;
  MIG: PCA fitted on the MIG samples, each group's reduced codes discretised into one
  code by KMeans(20 clusters, random_state=0) (a group reduced to one dimension is
  binned with the 20-bin histogram instead, as the official code does).
  Only dci, factor_vae and mig are defined under this protocol.
  Groups: `groups=[(name, dim), ...]` summing to the code size (methods expose
  `model.groups`). Without groups the whole code is one group (a warning-free, named
  choice recorded in the result); MIG then fails, since it needs two groups.

protocol="unit-pca" (DisDiff's and EncDiff's published numbers): each of the
  representation's groups (a method's units: DisDiff's 6 x 32, EncDiff's 20 tokens) is
  reduced by PCA to one dimension, fitted once on the `num_train` codes drawn from
  `RandomState(seed)` (the standard sets' first draw); every metric of the dlib protocol
  then runs, unchanged (FactorVAE prunes at 0.05), on the reduced codes.

The returned dict records the protocol, the dataset, every setting and the groups, so
a number is never separated from how it was obtained.
"""

from __future__ import annotations

import time
from typing import Callable, Sequence

import numpy as np

from fdae.errors import FdaeError
from fdae.metrics.beta_vae import beta_vae_score
from fdae.metrics.dci import dci as dci_arrays
from fdae.metrics.factor_vae import factor_vae_score
from fdae.metrics.mig import mig as mig_arrays
from fdae.metrics.mig import mig_from_discrete
from fdae.metrics.modularity import modularity_explicitness
from fdae.metrics.sampling import DEFAULT_ENCODE_BATCH, Encoder, generate_factor_code
from fdae.metrics.sap import sap as sap_arrays
from fdae.metrics.utils import check_codes, histogram_discretize

PROTOCOLS = ("dlib", "paper", "unit-pca")
ALL_METRICS = ("dci", "mig", "sap", "modularity", "factor_vae", "beta_vae")
PROTOCOL_METRICS = {"dlib": ALL_METRICS, "paper": ("dci", "factor_vae", "mig"), "unit-pca": ALL_METRICS}


# ------------------------------------------------------------------ groups and PCA
def normalize_groups(groups, dim: int | None = None) -> list[tuple[str, int]]:
    """Validate [(name, dim), ...]; the dims must sum to `dim` when given."""
    out = []
    try:
        for name, size in groups:
            out.append((str(name), int(size)))
    except (TypeError, ValueError):
        raise FdaeError("groups must be a sequence of (name, dim) pairs, e.g. [('content0', 80), ('mask0', 80)].") from None
    if not out:
        raise FdaeError("groups is empty; give at least one (name, dim) pair or None.")
    if any(size < 1 for _, size in out):
        raise FdaeError(f"every group needs at least one dimension: {out}")
    if dim is not None and sum(s for _, s in out) != dim:
        raise FdaeError(
            f"the groups' dimensions sum to {sum(s for _, s in out)} but the codes have {dim} dimensions; "
            "pass groups that cover the representation exactly (model.groups)."
        )
    return out


def group_slices(groups) -> list[slice]:
    slices, start = [], 0
    for _, size in groups:
        slices.append(slice(start, start + size))
        start += size
    return slices


class GroupPCA:
    """Per-group PCA: each group's codes (float64) centred with the fitting mean and
    projected on its top `dims_per_group` eigenvectors of the covariance (ddof=1),
    largest eigenvalue first; each eigenvector's largest-magnitude entry is made
    positive so the result does not depend on the eigensolver's sign choice."""

    def __init__(self, groups, dims_per_group: int):
        self.groups = list(groups)
        self.dims_per_group = int(dims_per_group)
        self.out_dims = [min(self.dims_per_group, s) for _, s in self.groups]
        self.slices = group_slices(self.groups)
        self.means: list[np.ndarray] = []
        self.components: list[np.ndarray] = []

    def fit(self, codes) -> "GroupPCA":
        codes = np.asarray(codes, dtype=np.float64)
        if codes.shape[0] < 2:
            raise FdaeError("PCA needs at least 2 samples.")
        self.means, self.components = [], []
        for sl, k in zip(self.slices, self.out_dims):
            x = codes[:, sl]
            mean = x.mean(axis=0)
            xc = x - mean
            cov = xc.T @ xc / (x.shape[0] - 1)
            evals, evecs = np.linalg.eigh((cov + cov.T) / 2)
            order = np.argsort(evals)[::-1][:k]
            v = evecs[:, order]
            flip = np.sign(v[np.argmax(np.abs(v), axis=0), np.arange(v.shape[1])])
            flip[flip == 0] = 1.0
            self.means.append(mean)
            self.components.append(v * flip)
        return self

    def transform(self, codes) -> np.ndarray:
        codes = np.asarray(codes, dtype=np.float64)
        return np.concatenate(
            [(codes[:, sl] - m) @ v for sl, m, v in zip(self.slices, self.means, self.components)], axis=1
        )

    def split(self, reduced: np.ndarray) -> list[np.ndarray]:
        bounds = np.cumsum([0] + self.out_dims)
        return [reduced[:, a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def paper_dims_per_group(n_groups: int, total: int = 36) -> int:
    per = total // n_groups
    if per < 1:
        raise FdaeError(
            f"the paper protocol reduces {n_groups} groups to {total} // {n_groups} = 0 dimensions each; "
            "use fewer groups or the dlib protocol."
        )
    return per


def kmeans_discretize(groups_codes: Sequence[np.ndarray], num_clusters: int = 20, random_state: int = 0,
                      num_bins: int = 20, n_init=10) -> np.ndarray:
    """One discrete code per group: KMeans labels of the group's reduced codes, or the
    20-bin histogram of a group reduced to a single dimension."""
    from sklearn.cluster import KMeans

    cols = []
    for x in groups_codes:
        if x.shape[1] == 1:
            cols.append(histogram_discretize(x, num_bins)[:, 0])
        else:
            km = KMeans(n_clusters=num_clusters, random_state=random_state, n_init=n_init).fit(x)
            cols.append(km.labels_.astype(np.int64))
    return np.stack(cols, axis=1)


def paper_mig(codes, factors, groups, dims_per_group: int, num_clusters: int = 20, random_state: int = 0,
              num_bins: int = 20, n_init=10) -> dict:
    """MIG of the paper protocol on arrays: per-group PCA, KMeans code per group."""
    codes = check_codes(codes, "codes", min_samples=max(2, num_clusters))
    groups = normalize_groups(groups, codes.shape[1])
    if len(groups) < 2:
        raise FdaeError(
            "MIG under the paper protocol needs at least 2 groups (one discrete code per group); "
            "pass the representation's groups, e.g. FDAE's content and mask codes."
        )
    pca = GroupPCA(groups, dims_per_group).fit(codes)
    discrete = kmeans_discretize(pca.split(pca.transform(codes)), num_clusters, random_state, num_bins, n_init)
    out = mig_from_discrete(discrete, np.asarray(factors))
    return out


# ------------------------------------------------------------------------- evaluate
def parse_metrics(metrics, protocol: str) -> list[str]:
    """Metric names (aliases resolved) checked against what `protocol` defines."""
    allowed = PROTOCOL_METRICS[protocol]
    if metrics is None:
        return list(allowed)
    if isinstance(metrics, str):
        metrics = [m for m in metrics.replace(" ", "").split(",") if m]
    names = []
    for m in metrics:
        m = {"modularity_explicitness": "modularity", "factorvae": "factor_vae", "betavae": "beta_vae"}.get(m, m)
        if m not in ALL_METRICS:
            raise FdaeError(f"unknown metric {m!r}; choose from {', '.join(ALL_METRICS)}.")
        if m not in allowed:
            raise FdaeError(
                f"metric {m!r} is not part of the {protocol!r} protocol (it defines {', '.join(allowed)}); "
                "use --protocol dlib for it."
            )
        if m not in names:
            names.append(m)
    if not names:
        raise FdaeError("no metric selected.")
    return names


def dataset_info(dataset) -> dict:
    name = getattr(dataset, "name", None) or type(dataset).__name__
    info = {
        "name": str(name),
        "factor_names": [str(n) for n in getattr(dataset, "factor_names", [])],
        "factor_sizes": [int(s) for s in dataset.factor_sizes],
    }
    procedural = getattr(dataset, "procedural", None)
    if procedural is None and isinstance(name, str):
        procedural = name.endswith("-synth") or None
    if procedural is not None:
        info["procedural"] = bool(procedural)
    return info


def evaluate(dataset, encode: Callable, metrics=None, protocol: str = "dlib", random_state: int = 0, *,
             groups=None, num_train: int = 10000, num_test: int = 5000, batch_size: int = 16,
             vote_batch_size: int = 64, num_votes_train: int | None = None, num_votes_eval: int | None = None,
             num_bins: int = 20, prune_threshold: float | None = None,
             paper_dims: int = 36, kmeans_clusters: int = 20, kmeans_random_state: int = 0,
             dci_learning_rate: float = 0.1, dci_mode: str = "exact", device=None, encode_batch_size: int = DEFAULT_ENCODE_BATCH,
             n_jobs: int | None = None, progress: Callable[[str], None] | None = None,
             concepts: int | None = None,
             on_metric: Callable[[str, dict], None] | None = None) -> dict:
    """Evaluate `encode(images) -> codes` on `dataset` with the named protocol.

    metrics: list or comma-separated names from dci, mig, sap, modularity, factor_vae,
      beta_vae (default: all the protocol defines).
    random_state: int seed; every metric starts from `RandomState(random_state)`.
    groups: [(name, dim), ...] of the representation (paper protocol).
    concepts: FDAE's N (paper protocol): each group keeps paper_dims // (2N) dimensions,
      the official formula (`model.paper_concepts`); None: paper_dims // number of groups.
    num_votes_train / num_votes_eval: FactorVAE and BetaVAE vote counts (and FactorVAE's
      variance-estimate samples = num_votes_train); default num_train / num_test, as in
      the reference's configs.
    dci_mode: "exact" (disentanglement_lib's boosted trees, the default) or "fast"
      (histogram boosting; recorded in the result, see `fdae.metrics.dci`).
    Returns {"protocol", "dataset", "settings", "groups", "metrics": {name: dict},
    "seconds": {name: s}}; numpy arrays inside (e.g. DCI's importance matrix) can be
    made JSON-ready with `fdae.metrics.utils.to_builtin`.
    on_metric(name, result so far): called as each metric finishes (`fdae eval` saves
    what it has computed, so an interrupted evaluation loses nothing finished)."""
    if protocol not in PROTOCOLS:
        raise FdaeError(f"unknown protocol {protocol!r}; choose 'dlib' (standard), 'paper' (FDAE's published "
                        "numbers) or 'unit-pca' (DisDiff's and EncDiff's: one PCA dimension per unit).")
    if getattr(dataset, "factor_sizes", None) is None:  # an image folder: its label grid, or a clear error
        from fdae.data.folder import as_ground_truth

        dataset = as_ground_truth(dataset)
    if isinstance(random_state, np.random.RandomState) or not isinstance(random_state, (int, np.integer)):
        raise FdaeError("evaluate() takes an int seed as random_state (each metric starts from RandomState(seed)).")
    seed = int(random_state)
    names = parse_metrics(metrics, protocol)
    if num_train < 2 or num_test < 1:
        raise FdaeError(f"num_train must be at least 2 and num_test at least 1 (got {num_train}, {num_test}).")
    if protocol == "paper":
        num_needed = max(kmeans_clusters, 2)
        if "mig" in names and num_train < num_needed:
            raise FdaeError(f"the paper protocol's MIG clusters into {kmeans_clusters} groups: num_train must be at least {num_needed}.")
    say = progress or (lambda msg: None)
    encoder = Encoder(encode, device, encode_batch_size)
    votes_train = num_train if num_votes_train is None else int(num_votes_train)
    votes_eval = num_test if num_votes_eval is None else int(num_votes_eval)
    if prune_threshold is None:
        prune_threshold = 0.0 if protocol == "paper" else 0.05

    settings: dict = {
        "seed": seed,
        "num_train": num_train,
        "num_test": num_test,
        "batch_size": batch_size,
        "encode_convention": "encode(torch float (n, C, 64, 64) in [-1, 1]) -> (n, d)",
    }
    if "dci" in names:
        settings["dci_gbt"] = {"learning_rate": dci_learning_rate, "n_estimators": 100, "random_state": seed,
                               "mode": dci_mode}
    if protocol != "paper":
        settings.update({"num_bins": num_bins, "sap_continuous_factors": False})
    if "factor_vae" in names:
        settings["factor_vae"] = {
            "batch_size": vote_batch_size, "num_variance_estimate": votes_train, "num_train": votes_train,
            "num_eval": votes_eval, "prune_threshold": prune_threshold,
        }
    if "beta_vae" in names:
        settings["beta_vae"] = {"batch_size": vote_batch_size, "num_train": votes_train, "num_eval": votes_eval}

    result: dict = {"protocol": protocol, "dataset": dataset_info(dataset), "settings": settings,
                    "groups": None, "metrics": {}, "seconds": {}}

    if protocol == "unit-pca":
        if groups is None:
            raise FdaeError("the unit-pca protocol reduces each of the representation's units to one PCA "
                            "dimension and needs its groups (methods expose `model.groups`); pass groups=")
        g = normalize_groups(groups)
        t = time.perf_counter()
        say(f"fitting one PCA dimension per unit on {num_train} codes")
        fit_codes, _ = generate_factor_code(dataset, encoder, num_train, np.random.RandomState(seed), batch_size)
        encoder = _Reduced(encoder, GroupPCA(normalize_groups(g, fit_codes.shape[1]), 1).fit(fit_codes))
        result["groups"] = [list(x) for x in g]
        result["seconds"]["unit_pca_fit"] = time.perf_counter() - t
        settings["unit_pca"] = {"dims_per_unit": 1, "units": len(g),
                                "fit_on": "num_train codes from RandomState(seed), covariance ddof=1"}

    cache: dict = {}
    need_test = any(m in names for m in ("dci", "sap", "modularity"))

    def standard_sets():
        # DCI / MIG / SAP / modularity each start from RandomState(seed) and draw the
        # same batches: draw once.
        if "sets" not in cache:
            t = time.perf_counter()
            rs = np.random.RandomState(seed)
            say(f"sampling {num_train}" + (f" + {num_test}" if need_test else "") + " codes")
            tr = generate_factor_code(dataset, encoder, num_train, rs, batch_size)
            # MIG alone uses the first set only (drawing the second would not change it).
            te = generate_factor_code(dataset, encoder, num_test, rs, batch_size) if need_test else (None, None)
            cache["sets"] = (tr, te)
            result["seconds"]["sampling"] = time.perf_counter() - t
        return cache["sets"]

    def resolved_groups(dim):
        if groups is None:
            g = [("code", dim)]
        else:
            g = normalize_groups(groups, dim)
        return g

    if concepts is not None and (isinstance(concepts, bool) or not isinstance(concepts, (int, np.integer))
                                 or concepts < 1):
        raise FdaeError(f"concepts must be a positive int (FDAE's N) or None, got {concepts!r}")

    def dims_per_group(g) -> int:
        """The paper protocol's PCA dimensions per group, recorded with the rule used."""
        if concepts is not None:
            per = paper_dims_per_group(2 * int(concepts), paper_dims)
            rule = f"{paper_dims} // (2 x {int(concepts)} concepts)"
        else:
            per = paper_dims_per_group(len(g), paper_dims)
            rule = f"{paper_dims} // {len(g)} groups"
        result["groups"] = [list(x) for x in g]
        settings["paper"].update(dims_per_group=per, dims_rule=rule, reduced_dims=[min(per, s) for _, s in g])
        return per

    if protocol == "paper":
        settings["paper"] = {"total_dims": paper_dims, "kmeans_clusters": kmeans_clusters,
                             "kmeans_random_state": kmeans_random_state, "kmeans_n_init": 10,
                             "histogram_bins_for_1d_groups": num_bins,
                             "pca": "per group, covariance ddof=1, fitted on each metric's own samples"}
        if groups is not None:
            normalize_groups(groups)  # fail early on malformed groups

    for name in names:
        t0 = time.perf_counter()
        say(f"computing {name}")
        if name in ("dci", "mig", "sap", "modularity"):
            (ctr, ftr), (cte, fte) = standard_sets()
            t0 = time.perf_counter()
            if protocol != "paper":
                if name == "dci":
                    out = dci_arrays(ctr, ftr, cte, fte, random_state=seed, learning_rate=dci_learning_rate,
                                     n_jobs=n_jobs, mode=dci_mode)
                elif name == "mig":
                    out = mig_arrays(ctr, ftr, num_bins=num_bins)
                elif name == "sap":
                    out = sap_arrays(ctr, ftr, cte, fte, n_jobs=n_jobs)
                else:
                    out = modularity_explicitness(ctr, ftr, cte, fte, num_bins=num_bins, n_jobs=n_jobs)
            else:
                g = resolved_groups(ctr.shape[1])
                per = dims_per_group(g)
                if name == "dci":
                    check_codes(ctr, "codes", min_samples=2)
                    pca = GroupPCA(g, per).fit(ctr)
                    out = dci_arrays(pca.transform(ctr), ftr, pca.transform(cte), fte, random_state=seed,
                                     learning_rate=dci_learning_rate, n_jobs=n_jobs, mode=dci_mode)
                else:  # mig
                    out = paper_mig(ctr, ftr, g, per, kmeans_clusters, kmeans_random_state, num_bins)
        elif name == "factor_vae":
            reduce = None
            if protocol == "paper":

                def reduce(codes):
                    g = resolved_groups(codes.shape[1])
                    return GroupPCA(g, dims_per_group(g)).fit(codes).transform

            out = factor_vae_score(dataset, encoder, np.random.RandomState(seed), batch_size=vote_batch_size,
                                   num_train=votes_train, num_eval=votes_eval, num_variance_estimate=votes_train,
                                   prune_threshold=prune_threshold, reduce=reduce)
        else:  # beta_vae
            out = beta_vae_score(dataset, encoder, np.random.RandomState(seed), batch_size=vote_batch_size,
                                 num_train=votes_train, num_eval=votes_eval)
        result["metrics"][name] = out
        result["seconds"][name] = time.perf_counter() - t0
        if on_metric is not None:
            on_metric(name, result)
    if result["groups"] is None and groups is not None:
        result["groups"] = [list(x) for x in normalize_groups(groups)]
    result["code_dim"] = getattr(encoder, "inner", encoder).dim
    return result


class _Reduced(Encoder):
    """An encoder whose codes pass through a fitted GroupPCA (the unit-pca protocol)."""

    def __init__(self, inner: Encoder, pca: GroupPCA):
        super().__init__(inner.encode, inner.device, inner.batch_size)
        self.inner, self.pca = inner, pca
        self.dim = sum(pca.out_dims)

    def __call__(self, observations, factors: np.ndarray) -> np.ndarray:
        return self.pca.transform(self.inner(observations, factors))


def summary(result: dict) -> dict[str, float]:
    """The headline numbers of an `evaluate` result, one per row of a table."""
    rows: dict[str, float] = {}
    keys = {
        "dci": ("disentanglement", "completeness", "informativeness_train", "informativeness_test"),
        "mig": ("mig",),
        "sap": ("sap",),
        "modularity": ("modularity", "explicitness_train", "explicitness_test"),
        "factor_vae": ("train_accuracy", "eval_accuracy", "num_active_dims"),
        "beta_vae": ("train_accuracy", "eval_accuracy"),
    }
    for metric, out in result["metrics"].items():
        for k in keys.get(metric, ()):
            if k in out:
                rows[f"{metric}.{k}"] = out[k]
    return rows
