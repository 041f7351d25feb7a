"""One labelled-features workspace: the metrics' PreparedFeatures is a view over stats.LabelledFeatures, so class
means, the global mean, centring and the Gram matrix are computed once, in one place, and shared with the scores."""

import numpy as np
import pytest

from nctransfer import metrics as M
from nctransfer import transferability as T
from nctransfer.stats import FeatureStats, LabelledFeatures
from nctransfer.stats.labelled import CHUNK_ROWS
from nctransfer.transferability import Workspace


def _data(n=90, d=5, K=3, seed=0, offset=0.0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % K
    X = rng.normal(size=(n, d)) + 2.0 * rng.normal(size=(K, d))[y] + offset
    return X, y


def test_prepared_features_are_a_view_of_the_workspace():
    X, y = _data()
    ws = Workspace(X, y)
    p = M.prepare(ws)
    assert p.labelled is ws and p.has_samples and p.domain == "features"
    assert p._shift is ws.mean and p._msums is ws.centred_class_means and p.counts is ws.counts
    assert p.classes == [0, 1, 2] and p.codes is ws.codes
    # hand-checkable: class means of (X, y)
    np.testing.assert_allclose(p.class_means(), [X[y == k].mean(0) for k in range(3)], rtol=1e-13)
    # a score run first fills the cache the metrics then read (and the reverse)
    T.score("logme", ws)
    assert M.nc1(ws) == M.nc1(X, y) and T.score("neg_nc1", ws) == -M.nc1(X, y)
    assert M.prepare(ws, domain="features") is p  # cached per resolved domain


def test_float32_metrics_do_not_copy_the_samples_to_float64():
    X, y = _data(n=120, d=6)
    X32 = X.astype(np.float32)
    p = M.prepare(X32, y)
    M.nc1(p), M.cdnv(p), M.ncc_accuracy(p)
    assert p.X is p.labelled.samples and p.X.dtype == np.float32
    assert p.labelled._X is None and "Xc" not in p.labelled._cache  # chunked passes only
    # the same numbers as from the float64 copy of the same values
    assert M.nc1(X32, y) == M.nc1(X32.astype(np.float64), y)


def test_chunked_class_means_exact_for_large_offsets():
    X, y = _data(n=CHUNK_ROWS + 300, d=3, offset=1e6)
    lf = LabelledFeatures(X, y)
    ref = np.stack([(X[y == k] - X.mean(0)).mean(0) for k in range(3)])
    np.testing.assert_allclose(lf.centred_class_means, ref, atol=1e-9)
    blocks = list(lf.chunks())
    assert [len(c) for _, c in blocks] == [CHUNK_ROWS, 300]
    np.testing.assert_array_equal(np.vstack([b for b, _ in blocks]), lf.Xc)


def test_gram_domain_shared_between_metrics_and_scores():
    X, y = _data(n=12, d=30)
    ws = Workspace(X, y)
    p = M.prepare(ws)
    assert p.domain == "gram" and ws.gram_domain
    np.testing.assert_array_equal(p.centred_gram(), ws.gram_c / ws.n)
    assert M.vci(ws) == M.vci(X, y)


def test_statistics_source_and_errors():
    X, y = _data()
    s = FeatureStats().update(X, y)
    p = M.prepare(s)
    assert p.labelled is None and p.stats is s and not p.has_samples
    np.testing.assert_allclose(p.class_means(), M.prepare(X, y).class_means(), rtol=1e-12)
    with pytest.raises(Exception, match="labels y are required when X is an array"):
        M.prepare(X)
    with pytest.raises(Exception, match="not both"):
        M.prepare(LabelledFeatures(X, y), y)
    assert M.ncc_accuracy(X, y, means=LabelledFeatures(X, y)) == M.ncc_accuracy(X, y)
