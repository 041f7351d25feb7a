"""Collapse metrics: hand-computed tiny cases and agreement with a naive two-pass float64 reference
(tests/_metrics_reference.py, written from the spec formulas) through every input path: arrays (d x d and
N x N Gram domains), FeatureStats, PreparedFeatures."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import _metrics_reference as R
from nctransfer import FeatureStats
from nctransfer import metrics as M


def rel(a, b):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


# --------------------------------------------------------------------------------------------- hand computed
# class 0: (0,0), (2,0); class 1: (4,2), (6,2).  mu = (1,0), (5,2); Sigma_W = diag(1, 0);
# Sigma_B = Sigma_Bw = [[4,2],[2,1]] (rank 1, eigenvector (2,1)/sqrt5, eigenvalue 5); Sigma_T = [[5,2],[2,1]].
TINY_X = np.array([[0.0, 0.0], [2.0, 0.0], [4.0, 2.0], [6.0, 2.0]])
TINY_Y = np.array([0, 0, 1, 1])


@pytest.fixture(params=["arrays", "stats", "gram", "features"])
def tiny(request):
    if request.param == "arrays":
        return (TINY_X, TINY_Y)
    if request.param == "stats":
        return (FeatureStats().update(TINY_X, TINY_Y),)
    return (M.prepare(TINY_X, TINY_Y, domain=request.param),)


def test_tiny_nc1_fuzziness(tiny):
    # v^T Sigma_W v / lambda = (4/5) / 5; NC1 = that / K
    assert M.nc1(*tiny) == pytest.approx(0.08, abs=1e-14)
    assert M.fuzziness(*tiny) == pytest.approx(0.16, abs=1e-14)


def test_tiny_vci_squared_distance_cdnv(tiny):
    # tr(Sigma_T^{-1} Sigma_Bw) = tr([[1,-2],[-2,5]] [[4,2],[2,1]]) = 1 = rank: linearly perfectly separable
    assert M.vci(*tiny, warn_ratio=0) == pytest.approx(0.0, abs=1e-12)
    # ridge: tr((T + I)^{-1} Bw) with T + I = [[6,2],[2,2]], inverse [[2,-2],[-2,6]]/8 -> trace (8-4 -4+6)/8 = 6/8
    assert M.vci(*tiny, ridge=1.0) == pytest.approx(1 - 0.75, abs=1e-12)
    assert M.squared_distance(*tiny) == pytest.approx(1 / 5, abs=1e-14)
    value, V = M.cdnv(*tiny, return_matrix=True)
    assert value == pytest.approx(2 / (2 * 20), abs=1e-14)  # (Var0 + Var1) / (2 ||mu0 - mu1||^2) = 2/40
    assert np.isnan(V[0, 0]) and V[0, 1] == pytest.approx(0.05) and V[1, 0] == pytest.approx(0.05)


def test_tiny_nc2_nc3(tiny):
    r = M.nc2(*tiny)  # K = 2 is always a simplex ETF
    assert r.as_dict() == pytest.approx(dict(equinorm=0, equiangularity=0, max_angle=0, etf_distance=0), abs=1e-14)
    assert M.nc3(*tiny, W=np.array([[-2.0, -1.0], [2.0, 1.0]])) == pytest.approx(0.0, abs=1e-14)
    assert M.nc3(*tiny, W=np.array([[-4.0, -2.0], [4.0, 2.0]])) == pytest.approx(0.0, abs=1e-14)  # scale-free
    # W = I: ||I/sqrt2 - M/sqrt10||^2 = 2 - 2 tr(M)/sqrt20 with tr(M) = -2 + 1
    assert M.nc3(*tiny, W=np.eye(2)) == pytest.approx(2 + 2 / math.sqrt(20), abs=1e-14)


def test_tiny_sample_metrics():
    assert M.ncc_accuracy(TINY_X, TINY_Y) == 1.0
    assert M.nc4(TINY_X, TINY_Y) == 0.0
    assert M.nc4(TINY_X, TINY_Y, predictions=[0, 1, 1, 1]) == 0.25
    # linear classifier x -> argmax(W x + b): predicts class 1 iff x0 > 2.5 -> (4,2),(6,2) = agrees everywhere
    assert M.nc4(TINY_X, TINY_Y, W=np.array([[0.0, 0.0], [1.0, 0.0]]), b=[0.0, -2.5]) == 0.0
    assert M.nc4(TINY_X, TINY_Y, W=np.array([[0.0, 0.0], [1.0, 0.0]]), b=[0.0, -5.0]) == 0.25
    # raw H_0 = [[0,0],[2,0]] has ratio 1; H_1 = [[4,2],[6,2]]: ||H||_F^2 = 60, ||H||_2^2 = 30 + sqrt(884)
    expected = (1 + 60 / (30 + math.sqrt(884))) / 2
    for method in ("exact", "power", "auto"):
        assert M.numerical_rank(TINY_X, TINY_Y, method=method) == pytest.approx(expected, rel=1e-9)
    assert M.numerical_rank(TINY_X, TINY_Y, center=True) == pytest.approx(1.0, abs=1e-12)  # rank-1 deviations


def test_tiny_cosine():
    X = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0], [0.0, 3.0]])
    r = M.cosine_similarity(X, [0, 0, 1, 1])  # same direction within class, orthogonal between
    assert (r.d_within, r.d_total, r.class_separation) == pytest.approx((0.0, 0.5, 1.0), abs=1e-15)
    r = M.cosine_similarity(X, [0, 1, 0, 1])
    assert (r.d_within, r.d_total, r.class_separation) == pytest.approx((0.5, 0.5, 0.0), abs=1e-15)
    assert M.cosine_within_distance(X, [0, 1, 0, 1]) == pytest.approx(0.5)
    assert M.class_separation(X, [0, 0, 1, 1]) == pytest.approx(1.0)


def test_nc1_respects_rank_parameter():
    # 3 classes in 3-D: Sigma_B has 2 non-zero eigenvalues; with rank=1 only the top one is inverted
    X = np.array([[0, 0, 0], [0, 0, 1], [4, 0, 0], [4, 0, 1], [0, 1, 0], [0, 1, 1.0]])
    y = [0, 0, 1, 1, 2, 2]
    assert M.nc1(X, y) == pytest.approx(R.nc1(X, y), rel=1e-12)
    assert M.nc1(X, y, rank=1) == pytest.approx(R.nc1(X, y, r=1), rel=1e-12)


# ------------------------------------------------------------------------------------------- random vs naive
def make(seed, N, d, K, offset=0.0, scale=2.0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, K, N)
    y[:K] = np.arange(K)
    X = rng.normal(size=(N, d)) + scale * rng.normal(size=(K, d))[y] + offset
    return X, y


CASES = [(400, 12, 5), (150, 40, 3), (60, 200, 4), (300, 8, 20), (90, 90, 6)]


def inputs(X, y):
    """Every way of passing the same data."""
    return {
        "arrays": (X, y),
        "stats": (FeatureStats(chunk_size=50).update(X, y),),
        "prepared_features": (M.prepare(X, y, domain="features"),),
        "prepared_gram": (M.prepare(X, y, domain="gram"),),
        "torch": (__import__("torch").tensor(X), y),
    }


@pytest.mark.parametrize("case", CASES)
def test_stats_metrics_match_reference(case):
    N, d, K = case
    X, y = make(sum(case), N, d, K)
    ref = dict(nc1=R.nc1(X, y), fuzziness=R.fuzziness(X, y), cdnv=R.cdnv(X, y)[0],
               squared_distance=R.squared_distance(X, y), vci=R.vci(X, y), vci_ridge=R.vci(X, y, ridge=0.3),
               **{f"nc2_{k}": v for k, v in R.nc2(X, y).items()}, **R.cosine(X, y))
    W = np.random.default_rng(0).normal(size=(K, d))
    ref["nc3"] = R.nc3(X, y, W)
    for how, args in inputs(X, y).items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            got = dict(nc1=M.nc1(*args), fuzziness=M.fuzziness(*args), cdnv=M.cdnv(*args),
                       squared_distance=M.squared_distance(*args), vci=M.vci(*args),
                       vci_ridge=M.vci(*args, ridge=0.3), nc3=M.nc3(*args, W=W),
                       **{f"nc2_{k}": v for k, v in M.nc2(*args).as_dict().items()},
                       **M.cosine_similarity(*args).as_dict())
        for key, value in ref.items():
            if key == "vci" and d >= N - 1:  # degenerate: both ~0 (rounding), compare absolutely
                assert abs(got[key] - value) < 1e-9, (how, key)
            else:
                assert rel(got[key], value) < 1e-9, (how, key, got[key], value)
        np.testing.assert_allclose(M.cdnv_matrix(*args), R.cdnv(X, y)[1], rtol=1e-9)


@pytest.mark.parametrize("case", CASES)
def test_sample_metrics_match_reference(case):
    N, d, K = case
    X, y = make(sum(case) + 1, N, d, K, scale=0.6)  # overlapping classes: NCC makes mistakes
    assert M.ncc_accuracy(X, y) == R.ncc_accuracy(X, y)
    assert M.nc4(X, y) == pytest.approx(1 - R.ncc_accuracy(X, y), abs=1e-15)
    for center in (False, True):
        ref = R.numerical_rank(X, y, center=center)
        assert M.numerical_rank(X, y, center=center, method="exact") == pytest.approx(ref, rel=1e-10)
        assert M.numerical_rank(X, y, center=center, method="power", tol=1e-12, max_iter=20000) == pytest.approx(
            ref, rel=1e-6)
    value, per_class = M.numerical_rank(X, y, return_per_class=True)
    assert per_class.shape == (K,) and value == pytest.approx(per_class.mean())


def test_translation_with_large_offset_keeps_exactness():
    X, y = make(3, 500, 10, 4)
    for args in [(X + 1e6, y), (FeatureStats().update(X + 1e6, y),)]:
        assert rel(M.nc1(*args), R.nc1(X, y)) < 1e-9
        assert rel(M.vci(*args), R.vci(X, y)) < 1e-9
        assert rel(M.cdnv(*args), R.cdnv(X, y)[0]) < 1e-9
        assert rel(M.squared_distance(*args), R.squared_distance(X, y)) < 1e-9


def test_vci_pseudo_inverse_with_rank_deficient_sigma_T():
    # constant and duplicated columns: Sigma_T singular, the eigendecomposition path drops the null space
    X, y = make(4, 300, 6, 4)
    X = np.hstack([X, np.ones((300, 2)), X[:, :2] * 3.0])
    ref = R.vci(X, y)
    assert rel(M.vci(X, y), ref) < 1e-9
    assert rel(M.vci(FeatureStats().update(X, y)), ref) < 1e-9
    assert rel(M.vci(M.prepare(X, y, domain="gram"), warn_ratio=0), ref) < 1e-9


def test_gram_domain_is_chosen_automatically_when_N_below_d():
    X, y = make(5, 100, 400, 5)
    assert M.prepare(X, y).domain == "gram"
    assert M.prepare(X, y, domain="features").domain == "features"
    assert M.prepare(X[:, :50], y).domain == "features"
    with pytest.warns(Warning):
        assert M.vci(X, y) == pytest.approx(0.0, abs=1e-9)  # d >= N - 1: the probe interpolates
    ridge = M.vci(X, y, ridge=5.0)
    assert rel(ridge, R.vci(X, y, ridge=5.0)) < 1e-9
    assert rel(ridge, M.vci(FeatureStats().update(X, y), ridge=5.0)) < 1e-9


def test_ncc_with_training_means_and_predict():
    X, y = make(6, 300, 5, 3, scale=1.0)
    train = FeatureStats().update(X[:200], y[:200])
    mus = train.class_means()
    ref = R.ncc_labels(X[200:], mus, train.classes)
    np.testing.assert_array_equal(M.ncc_predict(X[200:], train).astype(int), ref)
    assert M.ncc_accuracy(X[200:], y[200:], means=train) == pytest.approx(np.mean(ref == y[200:]))
    assert M.nc4(X[200:], y[200:], means=train) == pytest.approx(np.mean(ref != y[200:]))
