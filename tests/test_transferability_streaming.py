"""Streaming scores (re-iterable batches, memory independent of N x d) equal the in-memory scores."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from nctransfer.exceptions import InputValueError, NotFoundError
from nctransfer.stats import FeatureStats
from nctransfer.transferability import METHODS
from nctransfer.transferability.parc import parc
from nctransfer.transferability.streaming import SCALING, array_batches, stream_score, streaming_methods

TOL = {"nleep": 1e-6, "parc": 1e-6}  # EM iterations / pair ranks propagate rounding; every other score 1e-8
SCORES = ["sfda", "etran", "transrate", "gbc", "ncti", "nleep", "parc", "logme", "hscore"]


def _in_memory(name, X, y, **options):
    if name == "parc":
        return parc(X, y, pca="exact", **options)
    return METHODS[name].fn(X, y, **options)


def _assert_close(name, s, m):
    tol = TOL.get(name, 1e-8)
    if isinstance(m, dict):
        assert set(s) == set(m)
        for k in m:
            assert s[k] == pytest.approx(m[k], rel=tol, abs=1e-12), (name, k)
    else:
        assert np.isfinite(m) and s == pytest.approx(m, rel=tol, abs=1e-12), name


def _data(seed, N, d, K, offset=0.0, labels=None):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, K, N)
    X = rng.normal(size=(N, d)) + 0.5 * rng.normal(size=(K, d))[y] + offset
    if labels is not None:
        y = np.asarray(labels)[y]
    return X, y


@pytest.mark.parametrize("name", SCORES)
def test_streaming_equals_in_memory_on_random_data(name):
    X, y = _data(0, 500, 24, 4, offset=3.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = _in_memory(name, X, y)
        s = stream_score(name, array_batches(X, y, 77))  # batches not dividing N
    _assert_close(name, s, m)


@pytest.mark.parametrize("name", ["sfda", "etran", "gbc", "ncti", "transrate"])
def test_streaming_with_string_labels_wide_features_and_given_stats(name):
    X, y = _data(1, 150, 90, 3, offset=100.0, labels=["cat", "dog", "eel"])
    stats = FeatureStats().update(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = _in_memory(name, X, y)
        s = stream_score(name, array_batches(X, y, 64), stats=stats)
    _assert_close(name, s, m)


def test_options_are_passed_through():
    X, y = _data(2, 300, 16, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _assert_close("gbc", stream_score("gbc", array_batches(X, y), gaussian="diagonal", n_components=8),
                      METHODS["gbc"].fn(X, y, gaussian="diagonal", n_components=8))
        _assert_close("gbc", stream_score("gbc", array_batches(X, y), n_components=None),
                      METHODS["gbc"].fn(X, y, n_components=None))
        _assert_close("etran", stream_score("etran", array_batches(X, y), lda_covariance="shrunk", tail="top"),
                      METHODS["etran"].fn(X, y, lda_covariance="shrunk", tail="top"))
        _assert_close("sfda", stream_score("sfda", array_batches(X, y), shrinkage=0.3),
                      METHODS["sfda"].fn(X, y, shrinkage=0.3))
        _assert_close("transrate", stream_score("transrate", array_batches(X, y), max_bytes=1),  # 1 class per pass
                      METHODS["transrate"].fn(X, y))


def test_errors_and_scaling_table():
    X, y = _data(3, 60, 5, 2)
    with pytest.raises(NotFoundError, match="no streaming path"):
        stream_score("leep", array_batches(X, y))
    with pytest.raises(InputValueError, match="zero-argument callable"):
        stream_score("gbc", [(X, y)])
    with pytest.raises(InputValueError, match="randomized PCA"):
        stream_score("parc", array_batches(X, y), pca="randomized")
    calls = []

    def shrinking():  # yields fewer samples on the second pass
        calls.append(1)
        return array_batches(X, y)() if len(calls) == 1 else array_batches(X[:30], y[:30])()

    with pytest.raises(InputValueError, match="samples"):
        stream_score("gbc", shrinking)
    assert set(SCALING) >= set(streaming_methods())


@pytest.mark.slow
def test_streaming_from_the_feature_store_on_real_features(tmp_path):
    """Real EfficientNet-Lite0 features of digits, streamed shard by shard from the cache."""
    import torch

    from nctransfer.data import load_dataset
    from nctransfer.extract import extract
    from nctransfer.models import load_model

    torch.set_num_threads(1)
    model = load_model("efficientnet_lite0")
    data = load_dataset("digits", "train", model=model, image_size=32, per_class=12)
    res = extract(model, data, ["blocks.4.0", "penultimate"], batch_size=32, store_features=True,
                  cache_dir=tmp_path, shard_size=32, progress=False)
    res = extract(model, data, ["blocks.4.0", "penultimate"], batch_size=32, store_features=True,
                  cache_dir=tmp_path, shard_size=32, progress=False)
    assert res.from_cache
    for tap, names in (("blocks.4.0", SCORES), ("penultimate", ["sfda", "ncti", "gbc", "etran"])):
        r = res[tap]
        parts = list(r.iter_batches())
        assert len(parts) == 4 and sum(len(p[1]) for p in parts) == 120  # one shard at a time
        for name in names:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                m = _in_memory(name, r.features.astype(np.float64), r.labels)
                s = stream_score(name, r.iter_batches, stats=r.stats)
            _assert_close(name, s, m)


def test_lanczos_top_eigenpairs_equal_lapack():
    from nctransfer.transferability._common import eigh, top_eigenpairs

    rng = np.random.default_rng(7)
    m = 600
    X = rng.normal(size=(900, m)) * (1.0 + np.arange(m)) ** -0.75
    A = X.T @ X
    w, V = top_eigenpairs(A, 32)
    w_ref, V_ref = eigh(A, subset=(m - 32, m - 1))
    np.testing.assert_allclose(w, w_ref[::-1], rtol=1e-12)
    np.testing.assert_allclose(np.abs(np.sum(V * V_ref[:, ::-1], axis=0)), 1.0, atol=1e-8)  # same vectors, +-
    again = top_eigenpairs(A, 32)
    assert np.array_equal(again[0], w) and np.array_equal(again[1], V)  # fixed start vector: reproducible
    assert top_eigenpairs(A[:100, :100], 5) is None and top_eigenpairs(A, 200) is None  # LAPACK cheaper there
