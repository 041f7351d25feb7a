"""Hypothesis properties of the collapse metrics: invariances (linear maps, rotation, scaling, translation,
relabelling, order, batching), perfect collapse, simplex ETF, float32 vs float64, streaming == one-shot."""

from __future__ import annotations

import warnings

import numpy as np
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from scipy.stats import ortho_group

from nctransfer import FeatureStats
from nctransfer import metrics as M

SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
STATS_METRICS = ["nc1", "fuzziness", "cdnv", "vci", "squared_distance", "nc2_equinorm", "nc2_equiangularity",
                 "nc2_max_angle", "nc2_etf_distance", "cosine_d_within", "class_separation"]


def rel(a, b, atol=1e-12):
    """Relative difference; values within ``atol`` of each other (e.g. both ~0, as NC2 for K = 2) count as 0."""
    if np.isnan(a) and np.isnan(b):  # undefined in both (e.g. class separation of 1-D positive features)
        return 0.0
    return 0.0 if abs(a - b) <= atol else abs(a - b) / max(abs(b), 1e-300)


@st.composite
def dataset(draw, min_d=1, max_d=6, max_K=5):
    seed = draw(st.integers(0, 2 ** 20))
    K = draw(st.integers(2, max_K))
    d = draw(st.integers(min_d, max_d))
    N = draw(st.integers(max(12 * (d + K), 3 * K), 150))
    spread = draw(st.sampled_from([0.3, 1.0, 3.0]))
    rng = np.random.default_rng(seed)
    y = np.concatenate([np.arange(K), rng.integers(0, K, N - K)])
    rng.shuffle(y)
    X = rng.normal(size=(N, d)) + spread * rng.normal(size=(K, d))[y]
    return X, y, rng


def values(*args, names=STATS_METRICS, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return M.compute_all(*args, metrics=names, **kw)


@SETTINGS
@given(dataset(), st.sampled_from([0.0, 1e6]))
def test_streaming_stats_equal_one_shot_arrays(data, offset):
    X, y, rng = data
    cuts = np.sort(rng.choice(np.arange(1, len(X)), size=3, replace=False))
    parts = [FeatureStats(chunk_size=9).update(a, b) for a, b in zip(np.split(X + offset, cuts), np.split(y, cuts))]
    rng.shuffle(parts)
    merged = sum(parts)
    one = values(X, y)  # two-pass over the arrays, no offset
    streamed = values(merged)
    names = ["nc1", "fuzziness", "cdnv", "vci", "squared_distance", "nc2_equinorm", "nc2_etf_distance"]
    for name in names:  # translation invariant: the 1e6 offset must not cost accuracy
        assert rel(streamed[name], one[name]) < 1e-8, (name, streamed[name], one[name])


@SETTINGS
@given(dataset(min_d=2))
def test_vci_invariant_under_invertible_linear_maps(data):
    X, y, rng = data
    A = rng.normal(size=(X.shape[1], X.shape[1]))
    assume(np.linalg.cond(A) < 1e3)
    a = M.vci(X, y, warn_ratio=0)
    b = M.vci(X @ A + rng.normal(size=X.shape[1]) * 100, y, warn_ratio=0)
    assert abs(a - b) < 1e-9


@SETTINGS
@given(dataset(), st.floats(1e-3, 1e3))
def test_nc1_cdnv_invariant_under_rotation_and_isotropic_scaling(data, c):
    X, y, rng = data
    d = X.shape[1]
    Q = ortho_group.rvs(d, random_state=rng.integers(2 ** 31)) if d > 1 else np.array([[-1.0]])
    base = values(X, y, names=["nc1", "fuzziness", "cdnv", "squared_distance", "vci", "nc2_equinorm",
                                "nc2_etf_distance"])
    moved = values(c * X @ Q, y, names=list(base))
    for name in base:
        assert rel(moved[name], base[name]) < 1e-9, name


@SETTINGS
@given(dataset())
def test_invariant_to_relabelling_sample_order_and_batching(data):
    X, y, rng = data
    K = int(y.max()) + 1
    new = np.array([f"class-{v}" for v in rng.permutation(K)], dtype=object)
    perm = rng.permutation(len(X))
    base = values(X, y, names=STATS_METRICS + ["ncc_accuracy", "numerical_rank"])
    relabelled = values(X[perm], new[y[perm]], names=list(base))
    batch = int(rng.integers(1, 40))
    s = FeatureStats()
    for i in range(0, len(X), batch):
        s.update(X[perm][i:i + batch], new[y[perm]][i:i + batch])
    streamed = values(s)
    for name in base:
        assert rel(relabelled[name], base[name]) < 1e-9, name
        if name in streamed:
            assert rel(streamed[name], base[name]) < 1e-9, name
    # the CDNV matrix is permuted consistently with the sorted new labels
    old_of_new = np.argsort(new)  # sorted new label i comes from old class old_of_new[i]
    np.testing.assert_allclose(M.cdnv_matrix(X, new[y]), M.cdnv_matrix(X, y)[np.ix_(old_of_new, old_of_new)])


@SETTINGS
@given(st.integers(0, 2 ** 20), st.integers(2, 6), st.integers(1, 8), st.sampled_from([0.0, 1e3, 1e6]),
       st.sampled_from(["arrays", "stats"]))
def test_perfect_collapse_gives_exactly_zero(seed, K, d_extra, offset, how):
    rng = np.random.default_rng(seed)
    d = K - 1 + d_extra
    means = rng.normal(size=(K, d)) * 5 + offset
    counts = rng.integers(1, 20, K)
    counts[0] = max(counts[0], 2)  # one sample in every class is refused (no within-class variability is defined)
    y = np.repeat(np.arange(K), counts)
    X = means[y]
    args = (X, y) if how == "arrays" else (FeatureStats(chunk_size=7).update(X, y),)
    assert M.nc1(*args) == 0.0
    assert M.vci(*args, warn_ratio=0) == 0.0
    assert M.cdnv(*args) == 0.0
    assert M.squared_distance(*args) == 0.0
    assert M.fuzziness(*args) == 0.0


@SETTINGS
@given(st.integers(0, 2 ** 20), st.integers(2, 8), st.integers(0, 5), st.floats(0.1, 100.0),
       st.sampled_from([0.0, 1e6]))
def test_simplex_etf_means_give_zero_nc2(seed, K, extra, scale, offset):
    rng = np.random.default_rng(seed)
    d = K + extra
    etf = np.eye(K) - 1.0 / K  # rows: simplex ETF vertices in R^K
    Q = ortho_group.rvs(d, random_state=seed) if d > 1 else np.eye(1)
    means = scale * np.hstack([etf, np.zeros((K, extra))]) @ Q + offset
    y = np.repeat(np.arange(K), rng.integers(2, 9, K))
    noise = rng.normal(size=(len(y), d))
    for k in range(K):  # within-class noise with zero class mean: the class means are exactly the ETF vertices
        noise[y == k] -= noise[y == k].mean(0)
    X = means[y] + noise
    r = M.nc2(FeatureStats().update(X, y))
    assert r.etf_distance < 1e-9 and r.equinorm < 1e-9 and r.equiangularity < 1e-9 and r.max_angle < 1e-9


@SETTINGS
@given(dataset(min_d=2))
def test_float32_and_float64_input_agree(data):
    X, y, _ = data
    X32 = X.astype(np.float32)
    names = STATS_METRICS + ["ncc_accuracy", "numerical_rank", "nc4"]
    a = values(X32, y, names=names)
    b = values(X32.astype(np.float64), y, names=names)
    c = values(FeatureStats().update(X32, y))
    for name in a:
        assert rel(a[name], b[name]) < 1e-12, name
        if name in c:
            assert rel(c[name], b[name]) < 1e-9, name
