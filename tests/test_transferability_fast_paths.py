"""The faster computations of PARC, ETran, GBC/NCTI's PCA and NLEEP equal the straightforward ones."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

parc_mod = importlib.import_module("nctransfer.transferability.parc")


@pytest.mark.parametrize("decimals", [None, 1])
def test_parc_ranksum_equals_spearmanr_with_and_without_ties(decimals):
    rng = np.random.default_rng(3)
    Z = rng.standard_normal((120, 6))
    if decimals is not None:  # coarse values: many tied dissimilarities, and two all-zero rows
        Z = np.round(Z, decimals)
        Z[[4, 9]] = 0.0
    Zn = parc_mod._row_normalised(Z)
    codes = rng.integers(0, 4, 120)
    assert parc_mod._parc_ranksum(Zn, codes, 4) == pytest.approx(parc_mod._parc_exact(Zn, codes, 4), rel=1e-12)


def test_parc_ranksum_undefined_without_within_class_pairs():
    Zn = parc_mod._row_normalised(np.random.default_rng(0).standard_normal((5, 3)))
    assert np.isnan(parc_mod._parc_ranksum(Zn, np.arange(5), 5))


@pytest.mark.parametrize("offset", [0.0, 590.0, -590.0, 800.0, -800.0])
def test_etran_row_logsumexp_shifted_and_unshifted_paths(offset):
    from scipy.special import logsumexp

    etran_mod = importlib.import_module("nctransfer.transferability.etran")
    X = np.random.default_rng(0).standard_normal((300, 50)) * 5 + offset
    np.testing.assert_allclose(etran_mod._row_logsumexp(X, chunk=128), logsumexp(X, axis=1), rtol=1e-14)


def test_etran_identity_lda_term_with_a_large_offset():
    from scipy.special import softmax

    from nctransfer.transferability import etran_terms

    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 200)
    X = rng.standard_normal((200, 8)) + y[:, None] * 0.7 + 1e3
    M = np.array([X[y == k].mean(0) for k in range(3)])
    P = softmax((X - X.mean(0)) @ (M - X.mean(0)).T - 0.5 * np.sum((M - X.mean(0)) ** 2, 1)
                + np.log(np.bincount(y) / 200), axis=1)
    assert etran_terms(X, y)["lda"] == pytest.approx(P[np.arange(200), y].mean(), rel=1e-12)


def _decaying(n, m, seed=7, offset=0.0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, m)) * (1.0 + np.arange(m)) ** -0.75 + offset


def test_block_krylov_top_equals_lapack():
    from nctransfer.transferability._common import block_krylov_top, eigh

    m, k = 600, 40
    X = _decaying(900, m)
    A = X.T @ X
    w, V = block_krylov_top(lambda B: A @ B, m, k)
    w_ref, V_ref = eigh(A, subset=(m - k, m - 1))
    w_ref, V_ref = w_ref[::-1], V_ref[:, ::-1]
    np.testing.assert_allclose(w, w_ref, rtol=1e-12)
    np.testing.assert_allclose(V @ (V.T @ V_ref), V_ref, atol=1e-9)  # same subspace
    again = block_krylov_top(lambda B: A @ B, m, k)
    assert np.array_equal(again[0], w) and np.array_equal(again[1], V)  # fixed start block: reproducible
    assert block_krylov_top(lambda B: A @ B, m, m) is None


def test_workspace_pca_without_the_scatter_equals_the_full_decomposition():
    from nctransfer.transferability._common import Workspace

    X = _decaying(700, 450, seed=2, offset=3.0)
    y = np.arange(700) % 5
    fast = Workspace(X, y)
    Z, ev = fast.pca(64)
    assert "scatter_T" not in fast._cache  # the d x d product was never formed
    full = Workspace(X, y)
    full.eigh_T()
    Z_ref, ev_ref = full.pca(64)
    np.testing.assert_allclose(ev, ev_ref, rtol=1e-12)
    np.testing.assert_allclose(Z, Z_ref, atol=1e-9 * np.abs(Z_ref).max())


def test_nleep_variance_pca_from_top_eigenpairs_equals_full_spectrum():
    from nctransfer.transferability._common import Workspace

    nleep_mod = importlib.import_module("nctransfer.transferability.nleep")
    X = _decaying(600, 420, seed=4)
    y = np.arange(600) % 3
    full = Workspace(X, y)
    full.eigh_T()
    for fraction in (0.3, 0.8, 0.99):  # 0.99 needs more than the top 32 (a second, larger request or the full path)
        Z = nleep_mod._pca_variance(Workspace(X, y), fraction)
        Z_ref = nleep_mod._pca_variance(full, fraction)
        assert Z.shape == Z_ref.shape
        np.testing.assert_allclose(Z, Z_ref, atol=1e-9 * np.abs(Z_ref).max())


def test_batched_gaussian_mixture_equals_scikit_learn():
    nleep_mod = importlib.import_module("nctransfer.transferability.nleep")
    rng = np.random.default_rng(5)
    Z = np.concatenate([rng.normal(c, 1.0, size=(80, 4)) for c in (-3.0, 0.0, 3.0)])
    Z -= Z.mean(0)
    fast = nleep_mod._fit_gmm(Z, 9, "full", 0, 100, 1e-6, batched=True)
    ref = nleep_mod._fit_gmm(Z, 9, "full", 0, 100, 1e-6, batched=False)
    assert fast.n_iter_ == ref.n_iter_
    np.testing.assert_allclose(fast.means_, ref.means_, atol=1e-9)
    np.testing.assert_allclose(fast.covariances_, ref.covariances_, atol=1e-9)
    np.testing.assert_allclose(fast.predict_proba(Z), ref.predict_proba(Z), atol=1e-9)
    np.testing.assert_allclose(fast.score_samples(Z), ref.score_samples(Z), rtol=1e-10)
