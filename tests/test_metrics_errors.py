"""Error paths and undefined cases of the collapse metrics: each asserts its message (and warning + NaN)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from nctransfer import FeatureStats
from nctransfer import metrics as M
from nctransfer.exceptions import (
    ConvergenceWarning,
    InputValueError,
    NotFittedError,
    NotFoundError,
    NumericalWarning,
    ShapeError,
    UndefinedMetricWarning,
)


def data(N=60, d=4, K=3, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(N) % K
    return rng.normal(size=(N, d)) + 3 * rng.normal(size=(K, d))[y], y


STATS_FUNCS = [M.nc1, M.fuzziness, M.nc2, M.cdnv, M.vci, M.squared_distance, M.cosine_similarity]


@pytest.mark.parametrize("fn", STATS_FUNCS + [M.ncc_accuracy, M.nc4, M.numerical_rank])
def test_fewer_than_two_classes(fn):
    X, _ = data()
    with pytest.raises(InputValueError, match="y must contain at least 2 distinct classes; got 1"):
        fn(X, np.zeros(len(X)))
    if fn in STATS_FUNCS:
        s = FeatureStats().update(X, np.zeros(len(X)))
        with pytest.raises(InputValueError, match="the statistics' labels must contain at least 2 distinct classes"):
            fn(s)


@pytest.mark.parametrize("fn", STATS_FUNCS)
def test_input_errors_name_the_problem(fn):
    X, y = data()
    Xnan = X.copy()
    Xnan[[3, 7], 1] = np.nan
    with pytest.raises(InputValueError, match=re.escape("X contains 2 non-finite value(s) (NaN or Inf) in 2 row(s): "
                                                        "rows [3, 7]")):
        fn(Xnan, y)
    with pytest.raises(ShapeError, match=r"X must be a 2-D array.*got shape \(60, 4, 1\).*Hint: pool"):
        fn(X[:, :, None], y)
    with pytest.raises(ShapeError, match="X and y have different lengths: X has 60 rows, y has 59"):
        fn(X, y[:-1])
    with pytest.raises(ShapeError, match=r"X is empty: expected at least one sample and one feature, got shape \(0, 4"):
        fn(X[:0], y[:0])
    with pytest.raises(InputValueError, match="labels y are required when X is an array; got y=None"):
        fn(X)
    with pytest.raises(InputValueError, match="pass either a FeatureStats object or"):
        fn(FeatureStats().update(X, y), y)
    with pytest.raises(NotFittedError, match="FeatureStats has seen no data"):
        fn(FeatureStats())


@pytest.mark.parametrize("fn", [M.nc4, M.ncc_accuracy, M.numerical_rank])
def test_sample_metrics_refuse_statistics(fn):
    X, y = data()
    msg = f"{fn.__name__} needs per-sample features: pass (X, y) arrays, not a FeatureStats object"
    with pytest.raises(InputValueError, match=re.escape(msg)):
        fn(FeatureStats().update(X, y))
    with pytest.raises(InputValueError, match=re.escape(msg)):
        fn(M.prepare(FeatureStats().update(X, y)))


def test_numerical_rank_class_too_small_warns_and_returns_nan():
    X, y = data()
    y = y.copy()
    y[0] = 7  # a singleton class
    with pytest.warns(UndefinedMetricWarning, match=r"numerical_rank is undefined for class\(es\) \[7\]: fewer than 2"):
        value, per_class = M.numerical_rank(X, y, return_per_class=True)
    assert np.isnan(value) and np.isnan(per_class[-1]) and np.all(np.isfinite(per_class[:-1]))
    y = data()[1]
    X0 = X.copy()
    X0[y == 1] = 0.0
    with pytest.warns(UndefinedMetricWarning, match=r"class\(es\) \[1\].*all-zero features"):
        assert np.isnan(M.numerical_rank(X0, y))


def test_singleton_class_is_fine_for_cdnv_and_nc1():
    X, y = data()
    y = y.copy()
    y[0] = 7
    with np.errstate(all="raise"):
        assert np.isfinite(M.cdnv(X, y)) and np.isfinite(M.nc1(X, y))


def test_nc1_rank_deficient_sigma_B_warns_and_returns_nan():
    # three classes whose means are collinear: Sigma_B has rank 1 < r = min(d, K-1) = 2
    rng = np.random.default_rng(1)
    y = np.repeat([0, 1, 2], 20)
    X = rng.normal(size=(60, 3))
    for k in range(3):
        X[y == k] -= X[y == k].mean(0)
        X[y == k] += [k * 1.0, 2.0 * k, 0.0]
    for fn in (M.nc1, M.fuzziness):
        with pytest.warns(UndefinedMetricWarning, match=r"Sigma_B has numerical rank 1 < r = 2.*Pass rank=<= 1"):
            assert np.isnan(fn(X, y))
        assert np.isfinite(fn(X, y, rank=1))


def test_coincident_class_means():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(40, 3))
    y = np.arange(40) % 2
    for k in range(2):
        X[y == k] -= X[y == k].mean(0)  # both class means at the origin
    with pytest.warns(UndefinedMetricWarning, match="cdnv is undefined: classes 0 and 1 have identical means"):
        value, V = M.cdnv(X, y, return_matrix=True)
    assert np.isnan(value) and np.isinf(V[0, 1])
    with pytest.warns(UndefinedMetricWarning, match="squared_distance is undefined"):
        assert np.isnan(M.squared_distance(X, y))
    with pytest.warns(UndefinedMetricWarning, match="all class means coincide"):
        assert np.isnan(M.nc1(X, y))
    with pytest.warns(UndefinedMetricWarning, match="nc2 is undefined: all class means coincide"):
        assert np.isnan(M.nc2(X, y).etf_distance)
    with pytest.warns(UndefinedMetricWarning, match="nc3 is undefined"):
        assert np.isnan(M.nc3(X, y, W=np.ones((2, 3))))
    assert M.vci(X, y, warn_ratio=0) == pytest.approx(1.0)  # no class information: defined, VCI = 1


def test_nc2_angles_undefined_when_a_mean_equals_the_mean_of_means():
    X = np.array([[-1.0, 0], [-1, 0.5], [0, 0], [0, 0.5], [1, 0], [1, 0.5]])  # middle class at mu_bar
    y = [0, 0, 1, 1, 2, 2]
    with pytest.warns(UndefinedMetricWarning, match=r"mean of class\(es\) \[1\] equals the mean of class means"):
        r = M.nc2(X, y)
    assert np.isfinite(r.equinorm) and np.isnan(r.equiangularity) and np.isnan(r.etf_distance)


def test_cosine_separation_undefined_when_all_features_point_the_same_way():
    X = np.array([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0], [4.0, 4.0]])
    with pytest.warns(UndefinedMetricWarning, match="every feature vector points the same way"):
        r = M.cosine_similarity(X, [0, 0, 1, 1])
    assert r.d_within == pytest.approx(0.0, abs=1e-15) and np.isnan(r.class_separation)


def test_vci_warns_when_N_is_not_comfortably_larger_than_d():
    X, y = data(N=100, d=20)
    with pytest.warns(NumericalWarning, match=r"vci: N = 100 samples is not comfortably larger than max\(d, K-1\) = 20"
                                              r".*VCI ~ 0.798.*ridge variant"):
        M.vci(X, y)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        M.vci(X, y, ridge=0.1)  # ridge: no warning
        M.vci(X, y, warn_ratio=4)  # 99 >= 80: no warning


def test_parameter_errors():
    X, y = data()
    msg = r"nc1: rank must be an integer in \[1, min\(d, K-1\)\] = \[1, 2\]; got 3"
    with pytest.raises(InputValueError, match=msg):
        M.nc1(X, y, rank=3)
    with pytest.raises(InputValueError, match="rtol must be in"):
        M.nc1(X, y, rtol=-1)
    with pytest.raises(InputValueError, match="vci: ridge must be a positive finite number"):
        M.vci(X, y, ridge=0)
    with pytest.raises(InputValueError, match="numerical_rank: method must be 'auto', 'exact' or 'power'; got 'svd'"):
        M.numerical_rank(X, y, method="svd")
    with pytest.raises(InputValueError, match=r"domain must be one of \('auto', 'features', 'gram'\); got 'x'"):
        M.prepare(X, y, domain="x")
    with pytest.raises(InputValueError, match="domain='gram' needs per-sample features"):
        M.prepare(FeatureStats().update(X, y), domain="gram")


def test_classifier_shape_errors():
    X, y = data()
    with pytest.raises(ShapeError, match=r"nc3: W must have shape \[K, d\] = \[3, 4\].*got \(4, 3\). Hint: pass W.T"):
        M.nc3(X, y, W=np.ones((4, 3)))
    with pytest.raises(InputValueError, match="nc3: W is all zeros"):
        M.nc3(X, y, W=np.zeros((3, 4)))
    with pytest.raises(InputValueError, match="nc3: W contains NaN or Inf"):
        M.nc3(X, y, W=np.full((3, 4), np.nan))
    with pytest.raises(ShapeError, match=r"nc4: W must have shape \[K, d\] = \[3, 4\]; got \(3, 5\)"):
        M.nc4(X, y, W=np.ones((3, 5)))
    with pytest.raises(ShapeError, match=r"nc4: b must have shape \[K\] = \[3\]; got \(2,\)"):
        M.nc4(X, y, W=np.ones((3, 4)), b=[0, 1])
    with pytest.raises(ShapeError, match="X and predictions have different lengths"):
        M.nc4(X, y, predictions=y[:5])
    with pytest.raises(InputValueError, match="predictions has labels not among the classes of the class means: 9"):
        M.nc4(X, y, predictions=np.where(y == 0, 9, y))


def test_ncc_with_foreign_means():
    X, y = data()
    train = FeatureStats().update(X[y < 2], y[y < 2])
    with pytest.raises(InputValueError, match=r"y has labels not among the classes of the class means: 2 \(known"):
        M.ncc_accuracy(X, y, means=train)
    with pytest.raises(ShapeError, match="X has 3 features but the class means have d=4"):
        M.ncc_predict(X[:, :3], train)
    with pytest.raises(InputValueError, match="means must be a FeatureStats or PreparedFeatures"):
        M.ncc_predict(X, np.zeros((2, 4)))


def test_power_iteration_cap_warns():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(1200, 600))
    y = np.arange(1200) % 2
    msg = r"power iteration for class [01] did not reach rtol=1e-15 in 2 iterations"
    with pytest.warns(ConvergenceWarning, match=msg):
        M.numerical_rank(X, y, center=True, method="power", tol=1e-15, max_iter=2)


def test_compute_all_errors():
    X, y = data()
    s = FeatureStats().update(X, y)
    with pytest.raises(NotFoundError, match="unknown metric 'ncc1'. Did you mean nc1"):
        M.compute_all(X, y, metrics=["ncc1"])
    with pytest.raises(NotFoundError, match=r"options given for unknown metric\(s\) \['vcii'\]"):
        M.compute_all(X, y, options={"vcii": {}})
    with pytest.raises(InputValueError, match="ncc_accuracy needs per-sample features"):
        M.compute_all(s, metrics=["ncc_accuracy"])
    with pytest.raises(InputValueError, match=r"metric 'nc3' requires \['W'\]"):
        M.compute_all(X, y, metrics="nc3")
