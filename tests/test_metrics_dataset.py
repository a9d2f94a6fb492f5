"""Dataset-level metrics: the reference's sampling order, FactorVAE / BetaVAE scores,
`evaluate` under both protocols, on small toy datasets that follow fdae.data's
interface (sample_factors, sample_observations_from_factors)."""

import numpy as np
import pytest
import torch

from fdae.errors import FdaeError
from fdae.metrics import beta_vae_score, dci, evaluate, factor_vae_score, mig
from fdae.metrics.protocol import GroupPCA, paper_mig
from fdae.metrics.sampling import Encoder, generate_factor_code, sample_observations


class ToyData:
    """Observation = the factors written into the first pixels of a 64x64 image."""

    name = "toy"
    factor_names = ("a", "b", "c")
    factor_sizes = (4, 3, 5)

    def sample_factors(self, n, random_state):
        f = np.zeros((n, len(self.factor_sizes)), dtype=np.int64)
        for j, s in enumerate(self.factor_sizes):
            f[:, j] = random_state.randint(s, size=n)
        return f

    def sample_observations_from_factors(self, factors, random_state):
        obs = np.zeros((len(factors), 64, 64, 1), dtype=np.float32)
        obs[:, 0, : factors.shape[1], 0] = factors / (np.array(self.factor_sizes) - 1.0)
        return obs


class NuisanceToyData(ToyData):
    """Like ToyData, but draws a nuisance value per image from the random state (as
    disentanglement_lib's SmallNORB does), so skipping or splitting calls would shift the stream."""

    def sample_observations_from_factors(self, factors, random_state):
        obs = super().sample_observations_from_factors(factors, random_state)
        obs[:, 1, 0, 0] = random_state.randint(7, size=len(factors)) / 6.0
        return obs


SIZES = np.array(ToyData.factor_sizes)


def identity_encode(images):
    """images (n, 1, 64, 64) in [-1, 1] -> the factor indices, as float codes."""
    assert isinstance(images, torch.Tensor) and images.shape[1:] == (1, 64, 64)
    x = (images[:, 0, 0, :3] + 1.0) / 2.0
    return torch.round(x * torch.tensor(SIZES - 1.0, dtype=torch.float32))


def noisy_identity(seed=0, scale=0.05):
    g = torch.Generator().manual_seed(seed)

    def encode(images):
        c = identity_encode(images)
        return c + scale * torch.randn(c.shape, generator=g)

    return encode


# ----------------------------------------------------------------- sampling order
def reference_factor_code(ds, encode, num_points, rs, batch_size):
    """The reference's generate_batch_factor_code, written plainly: batch by batch,
    factors then observations then codes."""
    codes, factors = [], []
    i = 0
    while i < num_points:
        n = min(num_points - i, batch_size)
        f = ds.sample_factors(n, rs)
        obs = ds.sample_observations_from_factors(f, rs)
        images = torch.from_numpy(obs).permute(0, 3, 1, 2) * 2 - 1
        codes.append(np.asarray(encode(images)))
        factors.append(f)
        i += n
    return np.vstack(codes), np.vstack(factors)


@pytest.mark.parametrize("data_cls", [ToyData, NuisanceToyData])
def test_generate_factor_code_follows_reference_order(data_cls):
    ds = data_cls()
    enc = Encoder(identity_encode, batch_size=40)  # encoding batches differ from sampling ones
    rs_a, rs_b = np.random.RandomState(0), np.random.RandomState(0)
    codes, factors = generate_factor_code(ds, enc, 103, rs_a, batch_size=16)
    ref_codes, ref_factors = reference_factor_code(ds, identity_encode, 103, rs_b, 16)
    np.testing.assert_array_equal(factors, ref_factors)
    np.testing.assert_array_equal(codes, ref_codes)
    np.testing.assert_array_equal(codes, factors)
    assert rs_a.randint(10**9) == rs_b.randint(10**9)  # same stream position afterwards


@pytest.mark.parametrize("data_cls", [ToyData, NuisanceToyData])
def test_sample_observations_chunks_keep_the_stream(data_cls):
    ds = data_cls()
    rs_a, rs_b = np.random.RandomState(1), np.random.RandomState(1)
    codes, factors = sample_observations(ds, 250, rs_a, Encoder(identity_encode, batch_size=64))
    f = ds.sample_factors(250, rs_b)
    ds.sample_observations_from_factors(f, rs_b)
    np.testing.assert_array_equal(factors, f)
    np.testing.assert_array_equal(codes, f)
    assert rs_a.randint(10**9) == rs_b.randint(10**9)


# ----------------------------------------------------------------------- FactorVAE
def reference_factor_vae(ds, encode, rs, batch_size, num_train, num_eval, num_var, threshold):
    """The reference's FactorVAE score, one vote at a time (for comparison)."""

    def rep(f):
        obs = ds.sample_observations_from_factors(f, rs)
        return np.asarray(encode(torch.from_numpy(obs).permute(0, 3, 1, 2) * 2 - 1), dtype=np.float64)

    f = ds.sample_factors(num_var, rs)
    gvar = np.var(rep(f), axis=0, ddof=1)
    active = np.sqrt(gvar) >= threshold

    def votes(num):
        v = np.zeros((len(ds.factor_sizes), gvar.shape[0]), dtype=np.int64)
        for _ in range(num):
            k = rs.randint(len(ds.factor_sizes))
            f = ds.sample_factors(batch_size, rs)
            f[:, k] = f[0, k]
            lv = np.var(rep(f), axis=0, ddof=1)
            v[k, np.argmin(lv[active] / gvar[active])] += 1
        return v

    tv = votes(num_train)
    clf = np.argmax(tv, axis=0)
    cols = np.arange(tv.shape[1])
    ev = votes(num_eval)
    return tv[clf, cols].sum() / tv.sum(), ev[clf, cols].sum() / ev.sum()


def test_factor_vae_equals_reference_loop():
    ds = NuisanceToyData()
    enc = noisy_identity(scale=0.3)
    enc2 = noisy_identity(scale=0.3)
    out = factor_vae_score(ds, enc, np.random.RandomState(7), batch_size=8, num_train=60, num_eval=40,
                           num_variance_estimate=100, prune_threshold=0.05, encode_batch_size=1000)
    ref = reference_factor_vae(ds, enc2, np.random.RandomState(7), 8, 60, 40, 100, 0.05)
    assert out["train_accuracy"] == pytest.approx(ref[0], abs=1e-12)
    assert out["eval_accuracy"] == pytest.approx(ref[1], abs=1e-12)


def test_factor_vae_reference_cases_and_active_dims():
    ds = ToyData()
    out = factor_vae_score(ds, identity_encode, np.random.RandomState(0), batch_size=5, num_train=300,
                           num_eval=200, num_variance_estimate=250)
    assert 0.9 <= out["train_accuracy"] <= 1.0 and 0.9 <= out["eval_accuracy"] <= 1.0
    assert out["num_active_dims"] == 3

    zeros = factor_vae_score(ds, lambda x: torch.zeros(x.shape[0], 3), 0, batch_size=5, num_train=50,
                             num_eval=50, num_variance_estimate=100)
    assert zeros == {"train_accuracy": 0.0, "eval_accuracy": 0.0, "num_active_dims": 0}

    # two collapsed dimensions: the true count of active ones is 3 (the reference says 5).
    def with_dead(x):
        c = identity_encode(x)
        return torch.cat([c, torch.zeros(c.shape[0], 2)], dim=1)

    out = factor_vae_score(ds, with_dead, 0, batch_size=5, num_train=50, num_eval=50, num_variance_estimate=100)
    assert out["num_active_dims"] == 3 and out["active_dims"] == [0, 1, 2]


def test_beta_vae_identity():
    out = beta_vae_score(ToyData(), identity_encode, np.random.RandomState(0), batch_size=5, num_train=300,
                         num_eval=200)
    assert 0.9 <= out["train_accuracy"] <= 1.0 and 0.9 <= out["eval_accuracy"] <= 1.0


def test_dataset_level_errors():
    ds = ToyData()
    with pytest.raises(FdaeError, match="batch_size"):
        factor_vae_score(ds, identity_encode, 0, batch_size=1)
    with pytest.raises(FdaeError, match="NaN"):
        factor_vae_score(ds, lambda x: torch.full((x.shape[0], 3), float("nan")), 0, num_variance_estimate=10)
    with pytest.raises(FdaeError, match="shape"):
        factor_vae_score(ds, lambda x: torch.zeros(3, 3), 0, num_variance_estimate=10)
    with pytest.raises(FdaeError, match="protocol"):
        evaluate(ds, identity_encode, protocol="nope")
    with pytest.raises(FdaeError, match="not part of the 'paper' protocol"):
        evaluate(ds, identity_encode, metrics="sap", protocol="paper")
    with pytest.raises(FdaeError, match="unknown metric"):
        evaluate(ds, identity_encode, metrics="dci,foo")
    with pytest.raises(FdaeError, match="sum to"):
        evaluate(ds, identity_encode, metrics="dci", protocol="paper", groups=[("g", 2)], num_train=30, num_test=10)
    with pytest.raises(FdaeError, match="at least 2 groups"):
        evaluate(ds, identity_encode, metrics="mig", protocol="paper", num_train=40, num_test=10)


# ------------------------------------------------------------------------ evaluate
def test_evaluate_dlib_shares_samples_and_matches_array_metrics():
    ds = ToyData()
    res = evaluate(ds, noisy_identity(), metrics="dci,mig,sap,modularity,factor_vae,beta_vae", num_train=150,
                   num_test=60, num_votes_train=80, num_votes_eval=40, vote_batch_size=8)
    assert res["protocol"] == "dlib"
    assert res["dataset"]["name"] == "toy" and res["dataset"]["factor_sizes"] == [4, 3, 5]
    s = res["settings"]
    assert s["seed"] == 0 and s["batch_size"] == 16 and s["num_bins"] == 20
    assert s["factor_vae"]["prune_threshold"] == 0.05 and s["factor_vae"]["num_train"] == 80
    for name in ("dci", "mig", "sap", "modularity", "factor_vae", "beta_vae"):
        assert name in res["metrics"]
    assert res["metrics"]["dci"]["disentanglement"] > 0.9
    assert res["metrics"]["factor_vae"]["eval_accuracy"] > 0.9
    # same numbers as drawing the reference's way and calling the array-level metrics
    rs = np.random.RandomState(0)
    enc = noisy_identity()
    ctr, ftr = reference_factor_code(ds, enc, 150, rs, 16)
    cte, fte = reference_factor_code(ds, enc, 60, rs, 16)
    assert res["metrics"]["mig"]["mig"] == mig(ctr, ftr)["mig"]
    ref = dci(ctr, ftr, cte, fte, random_state=0)
    np.testing.assert_array_equal(res["metrics"]["dci"]["importance_matrix"], ref["importance_matrix"])


def test_evaluate_repeatable():
    ds = NuisanceToyData()
    kw = dict(metrics="dci,mig,factor_vae", num_train=120, num_test=50, num_votes_train=40, num_votes_eval=30,
              vote_batch_size=6, random_state=3)
    a = evaluate(ds, noisy_identity(scale=0.5), **kw)
    b = evaluate(ds, noisy_identity(scale=0.5), **kw)
    for name in ("dci", "mig", "factor_vae"):
        for key, val in a["metrics"][name].items():
            np.testing.assert_array_equal(np.asarray(b["metrics"][name][key]), np.asarray(val))


# ------------------------------------------------------------------- paper protocol
def grouped_encoder(mix: bool, seed=0):
    """Three groups of 4 dims; group g = rotation of (factor g, 3 noise dims); when mixed,
    group g carries a mixture of all three factors instead (invertible overall)."""
    rs = np.random.RandomState(seed)
    rot = [np.linalg.qr(rs.randn(4, 4))[0] for _ in range(3)]
    w = np.array([[1.0, 0.9, 0.8], [0.8, 1.0, 0.9], [0.9, 0.8, 1.0]]) if mix else np.eye(3)
    g = torch.Generator().manual_seed(seed)

    def encode(images):
        f = (identity_encode(images).numpy() / (SIZES - 1.0)) @ w.T
        noise = 0.02 * torch.randn((f.shape[0], 3, 3), generator=g).numpy()
        parts = [np.concatenate([f[:, [j]], noise[:, j]], axis=1) @ rot[j] for j in range(3)]
        return np.concatenate(parts, axis=1)

    return encode


GROUPS = [("content0", 4), ("content1", 4), ("content2", 4)]


def test_paper_protocol_on_known_groups():
    ds = ToyData()
    kw = dict(protocol="paper", groups=GROUPS, num_train=400, num_test=150, num_votes_train=80,
              num_votes_eval=60, vote_batch_size=8, paper_dims=6)
    good = evaluate(ds, grouped_encoder(False), **kw)
    assert good["protocol"] == "paper"
    assert list(good["metrics"]) == ["dci", "factor_vae", "mig"]
    p = good["settings"]["paper"]
    assert p["dims_per_group"] == 2 and p["reduced_dims"] == [2, 2, 2] and p["kmeans_clusters"] == 20
    assert good["settings"]["factor_vae"]["prune_threshold"] == 0.0
    assert good["settings"]["dci_gbt"]["learning_rate"] == 0.1
    assert good["groups"] == [list(g) for g in GROUPS]
    assert good["metrics"]["dci"]["importance_matrix"].shape == (6, 3)
    assert good["metrics"]["dci"]["disentanglement"] > 0.8
    assert good["metrics"]["factor_vae"]["eval_accuracy"] > 0.9
    assert good["metrics"]["factor_vae"]["num_active_dims"] == 6
    assert good["metrics"]["mig"]["mig"] > 0.5
    mixed = evaluate(ds, grouped_encoder(True), **kw)
    assert mixed["metrics"]["dci"]["disentanglement"] < good["metrics"]["dci"]["disentanglement"] - 0.3
    assert mixed["metrics"]["mig"]["mig"] < good["metrics"]["mig"]["mig"] - 0.3


def test_group_pca_and_paper_mig_on_arrays():
    rs = np.random.RandomState(0)
    f = np.stack([rs.randint(4, size=500), rs.randint(3, size=500)], axis=1)
    a = np.concatenate([f[:, [0]] + 0.01 * rs.randn(500, 1), 0.001 * rs.randn(500, 2)], axis=1)
    b = np.concatenate([0.001 * rs.randn(500, 2), f[:, [1]] + 0.01 * rs.randn(500, 1)], axis=1)
    codes = np.concatenate([a, b], axis=1)
    pca = GroupPCA([("a", 3), ("b", 3)], 1).fit(codes)
    red = pca.transform(codes)
    assert red.shape == (500, 2)
    # the first component of each group is (up to sign, fixed positive) its factor
    assert abs(np.corrcoef(red[:, 0], f[:, 0])[0, 1]) > 0.99 and abs(np.corrcoef(red[:, 1], f[:, 1])[0, 1]) > 0.99
    out = paper_mig(codes, f, [("a", 3), ("b", 3)], dims_per_group=2)
    assert out["mig"] > 0.9
    # permuting dimensions inside a group changes nothing
    perm = np.array([2, 0, 1, 4, 5, 3])
    out2 = paper_mig(codes[:, perm], f, [("a", 3), ("b", 3)], dims_per_group=2)
    assert out2["mig"] == pytest.approx(out["mig"], abs=1e-9)


def wide_encoder(seed=0):
    """One 80-dim group: the 3 factors, then 77 dims of small noise (FDAE's E+G shape)."""
    g = torch.Generator().manual_seed(seed)

    def encode(images):
        f = identity_encode(images)
        return torch.cat([f, 0.01 * torch.randn(f.shape[0], 77, generator=g)], dim=1)

    return encode


def test_paper_protocol_keeps_36_over_2n_dims_per_group_given_the_concepts():
    ds = ToyData()
    kw = dict(protocol="paper", metrics="dci,factor_vae", num_train=100, num_test=50, num_votes_train=30,
              num_votes_eval=20, vote_batch_size=8)
    # E+G (N = 1, one content group, no mask codes): the official 36 // (2N) = 18 dimensions
    eg = evaluate(ds, wide_encoder(), groups=[("content_0", 80)], concepts=1, **kw)
    p = eg["settings"]["paper"]
    assert (p["dims_per_group"], p["reduced_dims"], p["dims_rule"]) == (18, [18], "36 // (2 x 1 concepts)")
    assert eg["metrics"]["dci"]["importance_matrix"].shape == (18, 3)
    # a representation that is not FDAE's: 36 // (number of groups)
    other = evaluate(ds, wide_encoder(), groups=[("code", 80)], **kw)
    assert other["settings"]["paper"]["reduced_dims"] == [36]
    assert other["metrics"]["dci"]["importance_matrix"].shape == (36, 3)
    # N content + N mask groups: the same 36 // (2N) either way
    four = [("content_0", 20), ("content_1", 20), ("mask_0", 20), ("mask_1", 20)]
    a = evaluate(ds, wide_encoder(), groups=four, concepts=2, **kw)
    b = evaluate(ds, wide_encoder(), groups=four, **kw)
    assert a["settings"]["paper"]["reduced_dims"] == b["settings"]["paper"]["reduced_dims"] == [9] * 4
    np.testing.assert_array_equal(a["metrics"]["dci"]["importance_matrix"], b["metrics"]["dci"]["importance_matrix"])
    for bad in (0, 1.5, True):
        with pytest.raises(FdaeError, match="concepts"):
            evaluate(ds, wide_encoder(), groups=four, concepts=bad, **kw)


def test_unit_pca_protocol_equals_dlib_on_the_units_pca_codes():
    """unit-pca (DisDiff's and EncDiff's protocol): each unit reduced to one PCA dimension,
    then the standard metrics. Units that each hold one factor along a direction reduce to
    that factor (up to an affine map), so the metrics that do not see scale (MIG's
    histograms, FactorVAE's normalised variances) equal dlib on the factors' codes."""
    from fdae.data import get_dataset
    from fdae.metrics.protocol import evaluate

    ds = get_dataset("dsprites-synth", image_size=16)
    dirs = np.random.RandomState(0).randn(3, 4)

    def units(images, factors):  # 3 units of 4 dims: factor j+1 along direction j
        f = factors[:, 1:4].astype(np.float64)
        return np.concatenate([f[:, j:j + 1] * dirs[j] for j in range(3)], axis=1)

    def plain(images, factors):
        return factors[:, 1:4].astype(np.float64)

    units.uses_factors = plain.uses_factors = True
    kw = dict(metrics=["mig", "factor_vae"], num_train=300, num_test=100, num_votes_train=60, num_votes_eval=30)
    got = evaluate(ds, units, protocol="unit-pca", groups=[("u0", 4), ("u1", 4), ("u2", 4)], **kw)
    want = evaluate(ds, plain, protocol="dlib", **kw)
    assert got["protocol"] == "unit-pca" and got["settings"]["unit_pca"]["units"] == 3 and got["code_dim"] == 12
    assert got["settings"]["factor_vae"]["prune_threshold"] == 0.05
    assert got["metrics"]["mig"]["mig"] == pytest.approx(want["metrics"]["mig"]["mig"], abs=1e-9)
    assert got["metrics"]["factor_vae"]["eval_accuracy"] == want["metrics"]["factor_vae"]["eval_accuracy"]
    assert want["metrics"]["mig"]["mig"] > 0.3  # the check is not vacuous
    with pytest.raises(FdaeError, match="needs its groups"):
        evaluate(ds, units, protocol="unit-pca", **kw)
