"""FeatureStats: exact values on a hand-checkable case, agreement with a naive two-pass float64 reference, exact
merging (hypothesis), persistence, labels, torch input, memory bounded independently of N, error paths."""

from __future__ import annotations

import re
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import _metrics_reference as R
from nctransfer import FeatureStats
from nctransfer.exceptions import InputValueError, NotFittedError, ShapeError
from nctransfer.stats.feature_stats import ensure_stats, stats_from_batches

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def rel(a, b):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


def make_data(seed=0, N=240, d=6, K=4, offset=0.0):
    rng = np.random.default_rng(seed)
    y = np.arange(N) % K
    rng.shuffle(y)
    X = rng.normal(size=(N, d)) + 3.0 * rng.normal(size=(K, d))[y] + offset
    return X, y


def views(s):
    return dict(counts=s.class_counts(), means=s.class_means(), mu_G=s.global_mean(), mu_bar=s.mean_of_class_means(),
                var=s.class_variances(), unit=s.class_unit_sums(), T=s.sigma_T(), W=s.sigma_W(), B=s.sigma_B(),
                Bw=s.sigma_Bw())


def assert_views_close(a, b, tol=1e-10, offset=0.0):
    va, vb = views(a), views(b)
    assert a.classes == b.classes
    np.testing.assert_array_equal(va["counts"], vb["counts"])
    for key in ("means", "mu_G", "mu_bar"):  # compare about the offset: relative to the spread, not to 1e6
        assert rel(va[key] - offset, vb[key] - offset) < tol, key
    for key in ("var", "unit", "T", "W", "B", "Bw"):
        assert rel(va[key], vb[key]) < tol, key


# ------------------------------------------------------------------------------------------------ exact values
def test_hand_computed_tiny_case():
    # class "a": (0,0), (2,0); class "b": (4,2), (6,2)
    X = np.array([[0.0, 0.0], [2.0, 0.0], [4.0, 2.0], [6.0, 2.0]])
    y = np.array(["a", "a", "b", "b"])
    s = FeatureStats().update(X[:1], y[:1]).update(X[1:], y[1:])
    assert s.classes == ["a", "b"] and s.n_samples == 4 and s.dim == 2 and s.n_classes == 2
    np.testing.assert_array_equal(s.class_counts(), [2, 2])
    np.testing.assert_allclose(s.class_means(), [[1, 0], [5, 2]], atol=1e-15)
    np.testing.assert_allclose(s.global_mean(), [3, 1], atol=1e-15)
    np.testing.assert_allclose(s.class_variances(), [1, 1], atol=1e-14)
    np.testing.assert_allclose(s.sigma_W(), [[1, 0], [0, 0]], atol=1e-14)
    np.testing.assert_allclose(s.sigma_B(), [[4, 2], [2, 1]], atol=1e-14)
    np.testing.assert_allclose(s.sigma_Bw(), [[4, 2], [2, 1]], atol=1e-14)
    np.testing.assert_allclose(s.sigma_T(), [[5, 2], [2, 1]], atol=1e-14)
    # unit vectors: (0,0) contributes 0; (2,0) -> (1,0); (4,2)/sqrt(20); (6,2)/sqrt(40)
    np.testing.assert_allclose(s.class_unit_sums(),
                               [[1, 0], [4 / 20 ** 0.5 + 6 / 40 ** 0.5, 2 / 20 ** 0.5 + 2 / 40 ** 0.5]], atol=1e-15)
    G = s.second_moment()  # about the shift (the first batch's mean = (0, 0))
    np.testing.assert_allclose(s.shift_, [0, 0])
    np.testing.assert_allclose(G, X.T @ X, atol=1e-12)


def test_unbalanced_sigma_B_differs_from_sigma_Bw():
    X = np.array([[0.0], [0.0], [0.0], [4.0]])
    s = FeatureStats().update(X, [0, 0, 0, 1])
    np.testing.assert_allclose(s.sigma_B(), [[4.0]])  # (1/2)(2^2 + 2^2)
    np.testing.assert_allclose(s.sigma_Bw(), [[3.0]])  # 3/4 * 1 + 1/4 * 9
    np.testing.assert_allclose(s.sigma_T(), s.sigma_W() + s.sigma_Bw(), atol=1e-15)


@pytest.mark.parametrize("offset", [0.0, 1e6])
@pytest.mark.parametrize("shape", [(300, 7, 3), (50, 80, 5), (400, 12, 25), (600, 9, 40)])  # K > 32: sparse sums
def test_matches_naive_two_pass_reference(shape, offset):
    N, d, K = shape
    X, y = make_data(1, N, d, K, offset)
    s = FeatureStats(chunk_size=64)
    for start in range(0, N, 37):
        s.update(X[start:start + 37], y[start:start + 37])
    m = R.moments(X - offset, y)
    assert rel(s.class_means() - offset, m["mus"]) < 1e-10
    assert rel(s.sigma_W(), m["Sw"]) < 1e-10
    assert rel(s.sigma_B(), m["Sb"]) < 1e-10
    assert rel(s.sigma_Bw(), m["Sbw"]) < 1e-10
    assert rel(s.sigma_T(), m["T"]) < 1e-10
    var = [np.mean(np.sum((X[y == c] - X[y == c].mean(0)) ** 2, 1)) for c in m["classes"]]
    assert rel(s.class_variances(), var) < 1e-9
    unit = [np.sum(X[y == c] / np.linalg.norm(X[y == c], axis=1, keepdims=True), 0) for c in m["classes"]]
    assert rel(s.class_unit_sums(), unit) < 1e-12


def test_fast_precision_is_close():
    X, y = make_data(2, 3000, 16, 5, offset=5.0)
    X32 = X.astype(np.float32)
    exact = FeatureStats().update(X32, y)
    fast = FeatureStats(precision="fast", chunk_size=700)
    for start in range(0, len(X), 256):
        fast.update(X32[start:start + 256], y[start:start + 256])
    assert rel(fast.sigma_T(), exact.sigma_T()) < 1e-5
    assert rel(fast.class_means(), exact.class_means()) < 1e-6
    assert rel(fast.class_variances(), exact.class_variances()) < 1e-5
    # float64 input with a large offset: fast mode centres in float64 before casting
    Xo, yo = make_data(3, 2000, 8, 4, offset=1e6)
    f = FeatureStats(precision="fast").update(Xo, yo)
    e = FeatureStats().update(Xo, yo)
    assert rel(f.sigma_W(), e.sigma_W()) < 1e-5


# --------------------------------------------------------------------------------------- merging (hypothesis)
@st.composite
def split_case(draw):
    seed = draw(st.integers(0, 2 ** 16))
    N = draw(st.integers(8, 120))
    d = draw(st.integers(1, 6))
    K = draw(st.integers(2, 5))
    cuts = sorted(draw(st.lists(st.integers(1, N - 1), max_size=5, unique=True)))
    order_seed = draw(st.integers(0, 1000))
    offset = draw(st.sampled_from([0.0, 1e6]))
    return seed, N, d, K, cuts, order_seed, offset


@SETTINGS
@given(split_case())
def test_any_split_merged_in_any_order_equals_one_shot(case):
    seed, N, d, K, cuts, order_seed, offset = case
    X, y = make_data(seed, N, d, K, offset)
    one = FeatureStats().update(X, y)
    parts = [FeatureStats(chunk_size=7).update(Xp, yp) for Xp, yp in zip(np.split(X, cuts), np.split(y, cuts))]
    np.random.default_rng(order_seed).shuffle(parts)
    merged = parts[0]
    for p in parts[1:]:
        merged = merged + p
    assert merged.n_samples == N
    assert_views_close(merged, one, 1e-10, offset)
    assert_views_close(sum(parts), one, 1e-10, offset)  # sum() starts from 0


@SETTINGS
@given(st.integers(0, 2 ** 16), st.integers(1, 50), st.sampled_from([0.0, 1e6]))
def test_invariant_to_batch_size_and_sample_order(seed, batch, offset):
    X, y = make_data(seed, 90, 4, 3, offset)
    one = FeatureStats().update(X, y)
    perm = np.random.default_rng(seed).permutation(len(X))
    streamed = stats_from_batches((X[perm][i:i + batch], y[perm][i:i + batch]) for i in range(0, len(X), batch))
    assert_views_close(streamed, one, 1e-10, offset)


def test_relabelling_permutes_the_views():
    X, y = make_data(4, 120, 5, 4)
    relabel = np.array(["d", "b", "a", "c"])  # class 0 -> "d", 1 -> "b", ...
    s0 = FeatureStats().update(X, y)
    s1 = FeatureStats().update(X, relabel[y])
    assert s1.classes == ["a", "b", "c", "d"]
    perm = [2, 1, 3, 0]  # sorted new labels a, b, c, d come from old classes 2, 1, 3, 0
    np.testing.assert_allclose(s1.class_means(), s0.class_means()[perm], atol=1e-12)
    np.testing.assert_allclose(s1.class_variances(), s0.class_variances()[perm], atol=1e-12)
    np.testing.assert_allclose(s1.sigma_W(), s0.sigma_W(), atol=1e-12)


def test_float32_and_float64_input_agree():
    X, y = make_data(5, 500, 9, 3, offset=2.0)
    X32 = X.astype(np.float32)
    a = FeatureStats().update(X32, y)
    b = FeatureStats().update(X32.astype(np.float64), y)
    assert_views_close(a, b, 1e-12)


def test_chunk_size_does_not_change_results():
    X, y = make_data(6, 1000, 10, 6)
    assert_views_close(FeatureStats(chunk_size=1).update(X[:50], y[:50]), FeatureStats().update(X[:50], y[:50]))
    assert_views_close(FeatureStats(chunk_size=33).update(X, y), FeatureStats(chunk_size=5000).update(X, y))


# --------------------------------------------------------------------------------------------- labels / torch
@pytest.mark.parametrize("labels,expected", [
    (["cat", "dog", "cat", "eel"], ["cat", "dog", "eel"]),
    ([3, 1, 3, 2], [1, 2, 3]),
    (np.array([3, 1, 3, 2], dtype=np.int16), [1, 2, 3]),
    ([(1, "x"), (0, "y"), (1, "x"), (0, "z")], [(0, "y"), (0, "z"), (1, "x")]),
    ([True, False, True, True], [False, True]),
    ([2.5, -1.0, 2.5, 0.0], [-1.0, 0.0, 2.5]),
])
def test_labels_of_several_hashable_types(labels, expected):
    X = np.arange(8.0).reshape(4, 2)
    y = np.empty(len(labels), dtype=object)
    y[:] = labels
    s = FeatureStats().update(X, y if isinstance(labels[0], tuple) else labels)
    assert s.classes == expected
    assert int(s.class_counts().sum()) == 4


def test_mixed_unsortable_labels_keep_first_seen_order():
    X = np.arange(8.0).reshape(4, 2)
    s = FeatureStats().update(X, np.array([1, "a", 1, "a"], dtype=object))
    assert s.classes == [1, "a"]


def test_class_first_seen_in_a_later_batch():
    X, y = make_data(7, 200, 4, 5)
    first = y < 3
    s = FeatureStats().update(X[first], y[first]).update(X[~first], y[~first])
    assert s.classes == [0, 1, 2, 3, 4]
    assert_views_close(s, FeatureStats().update(X, y))


def test_torch_cpu_input_and_labels():
    torch = pytest.importorskip("torch")
    X, y = make_data(8, 100, 5, 3)
    ref = FeatureStats().update(X, y)
    for dtype in (torch.float64, torch.float32):
        s = FeatureStats().update(torch.tensor(X, dtype=dtype), torch.tensor(y))
        assert_views_close(s, ref, 1e-6 if dtype == torch.float32 else 1e-12)
    sb = FeatureStats().update(torch.tensor(X, dtype=torch.bfloat16), torch.tensor(y))  # no numpy twin
    assert rel(sb.class_means(), ref.class_means()) < 1e-2
    si = FeatureStats().update(torch.arange(12).reshape(6, 2), [0, 0, 0, 1, 1, 1])  # integer features
    np.testing.assert_allclose(si.class_means(), [[2, 3], [8, 9]])


# ----------------------------------------------------------------------------------------------- persistence
@pytest.mark.parametrize("labels", [["x", "y", "z"], [(0, 1), (1, 0), (2, 2)], [10, 20, 30]])
def test_save_load_round_trip(tmp_path, labels):
    X, y = make_data(9, 60, 3, 3)
    lab = np.empty(3, dtype=object)
    lab[:] = labels
    s = FeatureStats(precision="fast", chunk_size=17).update(X, lab[y])
    path = tmp_path / "sub" / "stats.npz"
    s.save(path)
    assert path.exists() and not list(path.parent.glob(".*tmp*"))  # atomic: no temporary left behind
    t = FeatureStats.load(path)
    assert t.precision == "fast" and t.chunk_size == 17 and t.classes == s.classes
    assert_views_close(t, s, 1e-15)
    np.testing.assert_array_equal(t.second_moment(), s.second_moment())
    FeatureStats().save(tmp_path / "empty.npz")  # an empty object round-trips too
    assert FeatureStats.load(tmp_path / "empty.npz").n_samples == 0


def test_state_dict_round_trip_and_continued_updates():
    X, y = make_data(10, 100, 4, 3)
    s = FeatureStats().update(X[:60], y[:60])
    t = FeatureStats.from_state_dict(s.state_dict())
    assert_views_close(t, s, 1e-15)
    t.update(X[60:], y[60:])
    assert_views_close(t, FeatureStats().update(X, y))
    bad = s.state_dict()
    bad["version"] = 99
    with pytest.raises(InputValueError, match="unsupported FeatureStats state version 99"):
        FeatureStats.from_state_dict(bad)


def test_pending_accumulator_is_folded_before_copy_and_merge():
    X, y = make_data(11, 64, 4, 2)
    s = FeatureStats(precision="fast", chunk_size=1000).update(X[:10], y[:10])  # float32 block still pending
    c = s.copy().update(X[10:], y[10:])
    assert_views_close(c, FeatureStats().update(X, y), 1e-4)  # fast mode: float32 rounding
    assert s.n_samples == 10 and rel(s.sigma_T(), FeatureStats().update(X[:10], y[:10]).sigma_T()) < 1e-5


def test_extra_memory_is_independent_of_N():
    rng = np.random.default_rng(0)
    peaks = []
    for N in (4000, 16000):
        X = rng.normal(size=(N, 64)).astype(np.float32)
        y = rng.integers(0, 10, N)
        tracemalloc.start()
        FeatureStats(chunk_size=512).update(X, y).sigma_W()
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    # only the label codes grow with N (8 bytes per sample); features are processed 512 rows at a time
    assert peaks[1] - peaks[0] < 16 * (16000 - 4000) + 200_000, peaks


# ----------------------------------------------------------------------------------------------- error paths
def test_nan_and_inf_message_says_how_many_and_which_rows():
    X = np.ones((30, 3))
    X[4, 1] = np.nan
    X[17, 0] = np.inf
    X[17, 2] = -np.inf
    with pytest.raises(InputValueError, match=r"X contains 3 non-finite value\(s\).*in 2 row\(s\): rows \[4, 17\]"):
        FeatureStats().update(X, np.arange(30) % 2)


def test_nan_in_torch_input():
    torch = pytest.importorskip("torch")
    X = torch.ones(5, 2)
    X[3, 0] = float("nan")
    with pytest.raises(InputValueError, match=r"1 non-finite value\(s\).*rows \[3\]"):
        FeatureStats().update(X, [0, 1, 0, 1, 0])


def test_many_bad_rows_are_truncated_in_the_message():
    X = np.full((40, 2), np.nan)
    with pytest.raises(InputValueError, match=r"in 40 row\(s\): rows \[0, 1, 2, 3, 4, 5, 6, 7, 8, 9\] and 30 more"):
        FeatureStats().update(X, np.zeros(40))


@pytest.mark.parametrize("shape,hint", [((5,), r"X\.reshape\(-1, 1\)"), ((5, 3, 2), "pool spatial/token")])
def test_X_not_2d_has_a_hint(shape, hint):
    msg = re.escape(f"X must be a 2-D array of shape [N, d]; got shape {shape}.") + ".*Hint: .*" + hint
    with pytest.raises(ShapeError, match=msg):
        FeatureStats().update(np.zeros(shape), np.zeros(5))


def test_length_mismatch():
    with pytest.raises(ShapeError, match="X and y have different lengths: X has 4 rows, y has 3"):
        FeatureStats().update(np.zeros((4, 2)), [0, 1, 0])


def test_empty_input():
    with pytest.raises(ShapeError, match=r"X is empty.*got shape \(0, 3\)"):
        FeatureStats().update(np.zeros((0, 3)), [])


def test_non_numeric_features():
    with pytest.raises(InputValueError, match="X must hold numbers; got dtype <U1"):
        FeatureStats().update(np.array([["a", "b"]]), [0])


def test_merging_statistics_of_different_width():
    a = FeatureStats().update(np.zeros((2, 3)), [0, 1])
    b = FeatureStats().update(np.zeros((2, 4)), [0, 1])
    with pytest.raises(ShapeError, match="cannot merge statistics of different width: d=3 and d=4"):
        a.merge(b)
    with pytest.raises(ShapeError, match="X has 4 features per sample but these statistics were built with d=3"):
        a.update(np.zeros((1, 4)), [0])
    with pytest.raises(TypeError, match="can only merge FeatureStats with FeatureStats; got ndarray"):
        a.merge(np.zeros(3))


def test_bad_constructor_arguments_and_unfitted_views():
    with pytest.raises(InputValueError, match=r"precision must be one of \('exact', 'fast'\); got 'half'"):
        FeatureStats(precision="half")
    with pytest.raises(InputValueError, match="chunk_size must be a positive integer; got 0"):
        FeatureStats(chunk_size=0)
    with pytest.raises(NotFittedError, match="FeatureStats has seen no data"):
        FeatureStats().sigma_W()


def test_ensure_stats():
    X, y = make_data(12, 20, 3, 2)
    s = FeatureStats().update(X, y)
    assert ensure_stats(s) is s
    assert_views_close(ensure_stats(X, y), s)
    with pytest.raises(InputValueError, match="labels y are required when X is an array"):
        ensure_stats(X)
    with pytest.raises(InputValueError, match="pass either a FeatureStats object or"):
        ensure_stats(s, y)
