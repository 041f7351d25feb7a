"""The shared helpers: one thread limiter (nctransfer.utils.threads), one Spearman (nctransfer.stats.spearman)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg  # noqa: F401  loads scipy's own BLAS before the pools are listed
from threadpoolctl import threadpool_info

from nctransfer.exceptions import InputValueError
from nctransfer.stats import spearman
from nctransfer.utils.threads import limit_threads


def test_limit_threads_sets_and_restores_torch_and_blas():
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    blas_before = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
    with limit_threads(1, preload=("scipy.linalg",)):
        assert torch.get_num_threads() == 1
        assert all(i["num_threads"] == 1 for i in threadpool_info() if i["user_api"] == "blas")
    assert torch.get_num_threads() == before
    assert [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"] == blas_before
    with limit_threads(None):  # no limit: nothing changes
        assert torch.get_num_threads() == before
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(InputValueError, match="threads must be a positive integer or None"):
            with limit_threads(bad):
                pass


def test_spearman_reference_values_and_missing_pairs():
    # ranks of y: [1, 2, 3.5, 5, 3.5]; rho = Pearson of the ranks = 0.8207826816681233 (as scipy.stats.spearmanr)
    rho, p, n = spearman([1, 2, 3, 4, 5], [5, 6, 7, 8, 7])
    assert rho == pytest.approx(0.8207826816681233, abs=1e-15) and n == 5 and 0 < p < 1
    rho, _, n = spearman([1, 2, 3, None, np.nan], [1, 2, 3, 4, 5])  # missing pairs left out
    assert rho == pytest.approx(1.0) and n == 3
    assert math.isnan(spearman([1, 2], [2, 1])[0])  # fewer than 3 pairs
    assert spearman([1, 2], [2, 1], min_pairs=2)[0] == pytest.approx(-1.0)
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3])[0])  # a constant side carries no ranking


def test_one_labelled_features_workspace_for_metrics_and_scores():
    from nctransfer import metrics, transferability as T
    from nctransfer.stats import LabelledFeatures
    from nctransfer.transferability import Workspace

    rng = np.random.default_rng(0)
    y = np.repeat(["cat", "dog", "emu"], 20)
    X = rng.normal(size=(60, 8)) + 3.0 * np.eye(8)[np.repeat([0, 1, 2], 20)]
    lf = LabelledFeatures(X, y)
    assert lf.classes == ["cat", "dog", "emu"] and lf.counts.tolist() == [20.0, 20.0, 20.0]
    np.testing.assert_allclose(lf.class_means[1], X[20:40].mean(0), rtol=1e-14)
    # the metrics and the scores take it as they take arrays: the same numbers
    for m in ("nc1", "vci", "cdnv"):
        assert getattr(metrics, m)(lf) == getattr(metrics, m)(X, y), m
    for s in ("logme", "neg_nc1", "neg_vci", "sfda", "hscore"):
        assert T.score(s, lf) == T.score(s, X, y), s
    # the collapse summary is computed once and cached in the workspace (no re-validation, no second copy)
    ws = Workspace(X, y)
    assert metrics.prepare(ws) is metrics.prepare(ws) and metrics.prepare(ws).X is ws.X
    assert T.score("neg_nc1", ws) == -metrics.nc1(X, y)
    with pytest.raises(InputValueError, match="at least 2"):
        LabelledFeatures(X, np.zeros(60))


def test_rank_takes_labelled_features_like_arrays():
    from nctransfer import transferability as T
    from nctransfer.stats import LabelledFeatures

    rng = np.random.default_rng(1)
    y = np.arange(60) % 3
    Xa = rng.normal(size=(60, 6)) + 2.0 * np.eye(6)[y]
    Xb = rng.normal(size=(60, 6)) + 0.5 * np.eye(6)[y]
    by_arrays = T.rank({"a": (Xa, y), "b": (Xb, y)}, methods=["logme", "neg_nc1", "ncti"])
    mixed = T.rank({"a": LabelledFeatures(Xa, y), "b": (Xb, y)}, methods=["logme", "neg_nc1", "ncti"])
    assert mixed.equals(by_arrays)
    with pytest.raises(InputValueError, match="same target labels"):
        T.rank({"a": LabelledFeatures(Xa, y[::-1]), "b": (Xb, y)}, methods=["logme"])


@pytest.mark.parametrize("name", ["nctransfer.metrics.geometry", "nctransfer.stats.labelled",
                                  "nctransfer.stats.correlation", "nctransfer.utils.configs", "nctransfer.utils.io"])
def test_docstring_examples_of_the_shared_modules(name):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


def test_the_scores_blas_limit_goes_through_the_one_limiter(monkeypatch):
    from nctransfer.transferability import _linalg
    from nctransfer.utils.threads import limit_blas_threads

    blas = lambda: [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]  # noqa: E731
    before = blas()
    with limit_blas_threads(1):
        assert set(blas()) == {1}
    assert blas() == before
    monkeypatch.setattr(_linalg, "_LAPACK_THREADS", 1)
    with _linalg.lapack_threads(10 ** 9):
        assert set(blas()) == {1}
    assert blas() == before
