"""Array-level metrics: the reference's published unit-test cases (inputs rebuilt from
their definitions), hand-computed cases, invariances, repeatability, user errors."""

import numpy as np
import pytest
from sklearn.metrics import mutual_info_score

from fdae.errors import FdaeError
from fdae.metrics import dci, mig, modularity_explicitness, sap
from fdae.metrics.dci import completeness_from_importance, disentanglement_from_importance
from fdae.metrics.modularity import modularity_from_mi
from fdae.metrics.utils import discrete_entropy, discrete_mutual_info, histogram_discretize

LOG2 = np.log(2.0)


def identity_data(n, sizes, seed=0):
    """Factors drawn uniformly; the 'identity' codes are the factors themselves."""
    rs = np.random.RandomState(seed)
    f = np.stack([rs.randint(s, size=n) for s in sizes], axis=1)
    return f.astype(np.float64), f


# ----------------------------------------------------------------- DCI from importance
DIAG = np.diag(5.0 * np.ones(5))


@pytest.mark.parametrize(
    "matrix, d_expected, c_expected",
    [
        (DIAG, 1.0, 1.0),  # diagonal
        (np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]), 1.0, 1.0),  # an empty code
        (np.zeros((10, 10)), 0.0, 0.0),  # nothing is important
        (np.vstack([DIAG, DIAG]), 1.0, 1.0 - np.log(2) / np.log(10)),  # redundant codes
        (DIAG[:2, :], 1.0, 1.0),  # missed factors
        (np.hstack([DIAG, DIAG]), 1.0 - np.log(2) / np.log(10), 1.0),  # one code, two factors
        (np.ones((4, 4)), 0.0, 0.0),  # uniform
    ],
)
def test_dci_from_importance_reference_cases(matrix, d_expected, c_expected):
    np.testing.assert_allclose(disentanglement_from_importance(matrix), d_expected, atol=1e-7)
    np.testing.assert_allclose(completeness_from_importance(matrix), c_expected, atol=1e-7)


def test_dci_from_importance_hand_case():
    # code 0 -> factor 0 only; code 1 splits 50/50 between the factors; weights 1/3, 2/3.
    r = np.array([[1.0, 0.0], [1.0, 1.0]])
    d = (1.0 / 3.0) * 1.0 + (2.0 / 3.0) * 0.0
    # factor 0: importances (1, 1) -> entropy 1 (base 2) -> 0; factor 1: (0, 1) -> 1.
    c = (2.0 / 3.0) * 0.0 + (1.0 / 3.0) * 1.0
    np.testing.assert_allclose(disentanglement_from_importance(r), d, atol=1e-8)
    np.testing.assert_allclose(completeness_from_importance(r), c, atol=1e-8)


# ------------------------------------------------------------------ shared helpers
def test_histogram_discretizer_reference_case():
    target = np.array([[0.1, 0.2, 0.3, 0.4, 0.5, 0.6], [0.6, 0.5, 0.4, 0.3, 0.2, 0.1]]).T
    expected = np.array([[1, 1, 2, 2, 3, 3], [3, 3, 2, 2, 1, 1]]).T
    np.testing.assert_array_equal(histogram_discretize(target, 3), expected)


def test_histogram_discretizer_matches_numpy_histogram_per_dim():
    rs = np.random.RandomState(1)
    codes = rs.randn(500, 4).astype(np.float32)
    got = histogram_discretize(codes, 20)
    for i in range(4):
        edges = np.histogram(codes[:, i], 20)[1]
        np.testing.assert_array_equal(got[:, i], np.digitize(codes[:, i], edges[:-1]))
    assert got.min() == 1 and got.max() == 20


def test_discrete_entropy_and_mi_reference_cases():
    target = np.array([[1, 1, 2, 2, 3, 3], [3, 3, 2, 2, 1, 1]]).T
    np.testing.assert_allclose(discrete_entropy(target), [np.log(3), np.log(3)])
    xs = np.array([[1, 2, 1, 2], [1, 1, 2, 2]]).T
    ys = np.array([[1, 2, 1, 2], [2, 2, 1, 1]]).T
    np.testing.assert_allclose(discrete_mutual_info(xs, ys), [[LOG2, 0.0], [0.0, LOG2]], atol=1e-12)


def test_mutual_info_equals_sklearn():
    rs = np.random.RandomState(2)
    a = rs.randint(7, size=(300, 3)) * 3 - 4  # arbitrary labels
    b = np.stack([rs.randint(5, size=300), a[:, 0] // 2, rs.randint(2, size=300)], axis=1)
    m = discrete_mutual_info(a, b)
    for i in range(3):
        for j in range(3):
            np.testing.assert_allclose(m[i, j], mutual_info_score(b[:, j], a[:, i]), atol=1e-12)


# ------------------------------------------------------------------------------ MIG
def test_mig_hand_computed():
    codes = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    factors = np.array([[0, 0], [0, 0], [1, 0], [1, 1]])
    # factor 0 = code 0 exactly: MI(c0) = log 2 = H, MI(c1) = 0 -> gap 1.
    # factor 1: H = -(3/4 log 3/4 + 1/4 log 1/4); both codes carry H - (1/2) log 2 -> gap 0.
    out = mig(codes, factors, num_bins=2)
    np.testing.assert_allclose(out["mig_per_factor"], [1.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(out["mig"], 0.5, atol=1e-12)
    h1 = -(0.75 * np.log(0.75) + 0.25 * np.log(0.25))
    np.testing.assert_allclose(out["factor_entropy"], [LOG2, h1])
    np.testing.assert_allclose(out["mutual_information"], [[LOG2, h1 - 0.5 * LOG2], [0.0, h1 - 0.5 * LOG2]], atol=1e-12)


def test_mig_reference_cases():
    codes, factors = identity_data(3000, [10] * 5)
    assert 0.9 <= mig(codes, factors)["mig"] <= 1.0  # identity codes
    assert mig(np.zeros_like(codes), factors)["mig"] == 0.0  # constant codes
    assert 0.0 <= mig(np.hstack([codes, codes]), factors)["mig"] <= 0.1  # duplicated codes


# ------------------------------------------------------------------------------ SAP
def test_sap_reference_cases():
    codes, factors = identity_data(3000, [10] * 5)
    assert 0.9 <= sap(codes, factors, codes, factors, continuous_factors=True)["sap"] <= 1.0
    zeros = np.zeros_like(codes)
    assert sap(zeros, factors, zeros, factors, continuous_factors=True)["sap"] == 0.0
    dup = np.hstack([codes, codes])
    assert 0.0 <= sap(dup, factors, dup, factors, continuous_factors=True)["sap"] <= 0.2


def test_sap_discrete_binary_identity_is_one():
    codes, factors = identity_data(600, [2, 2, 2])
    out = sap(codes[:400], factors[:400], codes[400:], factors[400:])
    # each code predicts its own factor perfectly and the others at chance (~0.5).
    assert out["score_matrix"].diagonal().min() == 1.0
    assert 0.4 <= out["sap"] <= 0.6


# ----------------------------------------------------------------------- modularity
@pytest.mark.parametrize(
    "matrix, expected",
    [
        (DIAG, 1.0),
        (np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]), 2.0 / 3.0),
        (np.zeros((10, 10)), 0.0),
        (np.vstack([DIAG, DIAG]), 1.0),
        (DIAG[:2, :], 1.0),
        (np.hstack([DIAG, DIAG]), 1.0 - 1.0 / 9.0),
    ],
)
def test_modularity_reference_cases(matrix, expected):
    np.testing.assert_allclose(modularity_from_mi(matrix), expected)


def test_modularity_hand_computed():
    codes = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]] * 2)
    factors = np.array([[0, 0], [0, 0], [1, 0], [1, 1]] * 2)
    h1 = -(0.75 * np.log(0.75) + 0.25 * np.log(0.25))
    a = h1 - 0.5 * LOG2  # MI of either code with factor 1
    # code 0: MI (log 2, a) -> 1 - a^2 / (log2^2 * (2 - 1)); code 1: MI (0, a) -> 1.
    expected = 0.5 * ((1.0 - a**2 / LOG2**2) + 1.0)
    out = modularity_explicitness(codes, factors, codes, factors, num_bins=2)
    np.testing.assert_allclose(out["modularity"], expected, atol=1e-12)
    np.testing.assert_allclose(out["mutual_information"], [[LOG2, a], [0.0, a]], atol=1e-12)


def test_modularity_explicitness_identity_and_duplicated():
    codes, factors = identity_data(1500, [10] * 4)
    out = modularity_explicitness(codes[:1000], factors[:1000], codes[1000:], factors[1000:])
    assert 0.9 <= out["modularity"] <= 1.0
    assert out["explicitness_train"] > 0.9 and out["explicitness_test"] > 0.9
    dup = np.hstack([codes, codes])
    assert 0.9 <= modularity_explicitness(dup[:1000], factors[:1000], dup[1000:], factors[1000:])["modularity"] <= 1.0


def test_modularity_bad_metric_permuted_codes():
    codes, factors = identity_data(20000, [10] * 4, seed=3)
    rs = np.random.RandomState(0)
    perm = np.array([rs.permutation(row) for row in codes])  # each sample's codes shuffled
    out = modularity_explicitness(perm[:10000], factors[:10000], perm[10000:], factors[10000:])
    assert 0.0 <= out["modularity"] <= 0.2


# ------------------------------------------------------------------------------ DCI
SIZES = [4, 3, 3]


def test_dci_identity_bad_and_duplicated():
    codes, factors = identity_data(600, SIZES)
    out = dci(codes[:400], factors[:400], codes[400:], factors[400:])
    assert 0.9 <= out["disentanglement"] <= 1.0 and 0.9 <= out["completeness"] <= 1.0
    assert out["informativeness_test"] == 1.0
    assert out["importance_matrix"].shape == (3, 3)

    dup = np.hstack([codes, codes])
    out = dci(dup[:400], factors[:400], dup[400:], factors[400:])
    assert out["disentanglement"] >= 0.9
    target = 1.0 - np.log(2) / np.log(dup.shape[1])
    assert abs(out["completeness"] - target) < 0.1

    rs = np.random.RandomState(0)
    noise = rs.randn(600, 3)
    out = dci(noise[:400], factors[:400], noise[400:], factors[400:])
    assert out["disentanglement"] < 0.2 and out["completeness"] < 0.2


def test_dci_repeatable_with_random_state():
    codes, factors = identity_data(300, SIZES)
    codes = codes + np.random.RandomState(5).randn(*codes.shape)  # noisy: the trees' choices matter
    a = dci(codes[:200], factors[:200], codes[200:], factors[200:], random_state=3)
    b = dci(codes[:200], factors[:200], codes[200:], factors[200:], random_state=3, n_jobs=1)
    np.testing.assert_array_equal(a["importance_matrix"], b["importance_matrix"])
    assert a["disentanglement"] == b["disentanglement"]
    assert a["informativeness_test"] == b["informativeness_test"]


def test_invariance_to_permuting_code_dimensions():
    codes, factors = identity_data(600, SIZES, seed=4)
    rs = np.random.RandomState(4)
    codes = np.hstack([codes + 0.1 * rs.randn(*codes.shape), rs.randn(600, 2)])
    perm = np.array([3, 0, 4, 2, 1])
    pc = codes[:, perm]
    tr, te = slice(0, 400), slice(400, 600)
    a = dci(codes[tr], factors[tr], codes[te], factors[te])
    b = dci(pc[tr], factors[tr], pc[te], factors[te])
    np.testing.assert_allclose(b["importance_matrix"], a["importance_matrix"][perm], atol=1e-3)
    np.testing.assert_allclose(b["disentanglement"], a["disentanglement"], atol=1e-3)
    np.testing.assert_allclose(b["completeness"], a["completeness"], atol=1e-3)
    assert mig(pc, factors)["mig"] == pytest.approx(mig(codes, factors)["mig"], abs=1e-12)
    sa = sap(codes[tr], factors[tr], codes[te], factors[te])
    sb = sap(pc[tr], factors[tr], pc[te], factors[te])
    np.testing.assert_array_equal(sb["score_matrix"], sa["score_matrix"][perm])
    ma = modularity_explicitness(codes[tr], factors[tr], codes[te], factors[te])
    mb = modularity_explicitness(pc[tr], factors[tr], pc[te], factors[te])
    assert mb["modularity"] == pytest.approx(ma["modularity"], abs=1e-12)
    assert mb["explicitness_test"] == pytest.approx(ma["explicitness_test"], abs=1e-4)


# --------------------------------------------------------------------------- errors
def test_user_errors():
    codes, factors = identity_data(50, SIZES)
    with pytest.raises(FdaeError, match="2-D"):
        mig(codes[:, 0], factors)
    with pytest.raises(FdaeError, match="same samples"):
        mig(codes, factors[:40])
    bad = codes.copy()
    bad[3, 1] = np.nan
    with pytest.raises(FdaeError, match="NaN"):
        dci(bad, factors, codes, factors)
    const = factors.copy()
    const[:, 2] = 1
    with pytest.raises(FdaeError, match="only 1 value"):
        mig(codes, const)
    with pytest.raises(FdaeError, match="at least 2"):
        sap(codes[:1], factors[:1], codes, factors)
    with pytest.raises(FdaeError, match="1 code dimension"):
        mig(codes[:, :1], factors)
    with pytest.raises(FdaeError, match="dimensions"):
        dci(codes, factors, codes[:, :2], factors)
    with pytest.raises(FdaeError, match="integers"):
        mig(codes, factors + 0.5)
    with pytest.raises(FdaeError, match="2 factors"):
        modularity_explicitness(codes, factors[:, :1], codes, factors[:, :1])
