"""The faster computations of PARC, ETran, GBC/NCTI's PCA and NLEEP equal the straightforward ones."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from nctransfer.stats import FeatureStats
from nctransfer.transferability import gbc, hscore, logme, ncti_terms, transrate
from nctransfer.transferability._common import Workspace
from nctransfer.transferability._linalg import dense_top_eigh, varying_columns

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


# ------------------------------------------------------------------ constant columns and the formed scatter
def _with_constant_columns(n, d, n_const, seed):
    """Decaying features with a class signal and ``n_const`` constant columns (0, 6 or 0.5: a unit that never
    activates or saturates); returns ``(X, y, varying column indices)``."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 4
    X = _decaying(n, d, seed=seed, offset=1.0) + 0.2 * rng.normal(size=(4, d))[y]
    const = np.sort(rng.choice(d, n_const, replace=False))
    X[:, const] = rng.choice([0.0, 6.0, 0.5], size=n_const)
    return X, y, np.setdiff1d(np.arange(d), const)


def test_varying_columns_finds_exactly_the_constant_ones():
    X, _, live = _with_constant_columns(300, 50, 17, seed=1)
    assert np.array_equal(varying_columns(X - X.mean(0)), live)
    assert varying_columns(_decaying(300, 50)) is None


def test_hscore_on_the_varying_columns_equals_the_pseudo_inverse_of_the_full_covariance():
    X, y, live = _with_constant_columns(500, 60, 20, seed=11)
    g = np.zeros_like(X)
    for c in range(4):
        g[y == c] = X[y == c].mean(0)
    ref = np.trace(np.linalg.pinv(np.cov(X, rowvar=False), rcond=1e-10, hermitian=True) @ np.cov(g, rowvar=False))
    ws = Workspace(X, y)
    assert hscore(ws) == pytest.approx(ref, rel=1e-10)
    assert "scatter_T" not in ws._cache and ws._cache["scatter_T_varying"].shape == (len(live), len(live))


@pytest.mark.parametrize("n, d, n_const", [(800, 300, 120), (700, 600, 100)])  # formed scatter; Krylov (N < 2m)
def test_gbc_and_ncti_on_the_varying_columns_equal_the_full_decomposition(n, d, n_const):
    X, y, live = _with_constant_columns(n, d, n_const, seed=5)
    ws = Workspace(X, y)
    value = gbc(ws)
    assert "scatter_T" not in ws._cache and ws._cache["top_eigh_T"][1][np.setdiff1d(np.arange(d), live)].max() == 0
    full = Workspace(X, y)
    full.eigh_T()  # the straightforward route: the full d x d eigendecomposition
    Z_ref, ev_ref = full.pca(64)
    Z, ev = ws.pca(64)
    np.testing.assert_allclose(ev, ev_ref, rtol=1e-11)
    np.testing.assert_allclose(Z, Z_ref, atol=1e-9 * np.abs(Z_ref).max())
    assert value == pytest.approx(gbc(Z_ref, y, n_components=None), rel=1e-10)
    terms, ref = ncti_terms(X, y), ncti_terms(full)
    for t in ("S_seli", "S_ncc", "S_vc"):
        assert terms[t] == pytest.approx(ref[t], rel=1e-9)


@pytest.mark.parametrize("n, d", [(1400, 700), (900, 420)])  # ARPACK (64 <= d/10); LAPACK's subset driver
def test_top_eigenpairs_from_the_formed_scatter_equal_the_full_decomposition(n, d):
    X = _decaying(n, d, seed=3, offset=2.0)
    y = np.arange(n) % 5
    ws = Workspace(X, y)
    ws.seed_top_eigh(64)
    assert "scatter_T" in ws._cache and ws._cache["top_eigh_T"][0].shape == (64,)
    full = Workspace(X, y)
    full.eigh_T()
    Z, ev = ws.pca(64)
    Z_ref, ev_ref = full.pca(64)
    np.testing.assert_allclose(ev, ev_ref, rtol=1e-11)
    np.testing.assert_allclose(Z, Z_ref, atol=1e-9 * np.abs(Z_ref).max())


@pytest.mark.parametrize("m, k", [(150, 20), (500, 30), (500, 80)])  # full, ARPACK, LAPACK subset
def test_dense_top_eigh_equals_lapack(m, k):
    X = _decaying(2 * m, m, seed=m + k)
    A = X.T @ X
    w, V = dense_top_eigh(A, k)
    w_ref, V_ref = np.linalg.eigh(A)
    w_ref, V_ref = w_ref[::-1][:k], V_ref[:, ::-1][:, :k]
    np.testing.assert_allclose(w, w_ref, rtol=1e-12)
    np.testing.assert_allclose(V @ (V.T @ V_ref), V_ref, atol=1e-9)


def test_logme_without_the_all_zero_columns_equals_the_full_gram_route():
    X, y, live = _with_constant_columns(600, 80, 30, seed=2)
    X[:, np.setdiff1d(np.arange(80), live)] = 0.0  # units that never activate
    ws = Workspace(X, y)
    value = logme(ws)
    assert ws._cache["raw_gram_nonzero"].shape == (50, 50) and "raw_gram" not in ws._cache
    assert value == pytest.approx(logme(FeatureStats().update(X, y)), rel=1e-10)  # the d x d statistics route


def test_batched_gaussian_mixture_without_the_kept_outer_products_equals_scikit_learn(monkeypatch):
    nleep_mod = importlib.import_module("nctransfer.transferability.nleep")
    monkeypatch.setattr(nleep_mod, "_OUTER_BYTES", 0)  # the factor-form E-step and the chunked M-step
    rng = np.random.default_rng(6)
    Z = np.concatenate([rng.normal(c, 1.0, size=(60, 3)) for c in (-3.0, 0.0, 3.0)])
    Z -= Z.mean(0)
    fast = nleep_mod._fit_gmm(Z, 6, "full", 0, 50, 1e-6, batched=True)
    assert getattr(fast, "_outer_cache", None) is None
    ref = nleep_mod._fit_gmm(Z, 6, "full", 0, 50, 1e-6, batched=False)
    assert fast.n_iter_ == ref.n_iter_
    np.testing.assert_allclose(fast.means_, ref.means_, atol=1e-9)
    np.testing.assert_allclose(fast.predict_proba(Z), ref.predict_proba(Z), atol=1e-9)


def test_transrate_on_the_varying_columns_equals_the_full_log_determinants():
    X, y, live = _with_constant_columns(400, 40, 15, seed=8)
    Z = X - X.mean(0)

    def rate(A):
        return 0.5 * np.linalg.slogdet(np.eye(A.shape[1]) + A.T @ A / (len(A) * 1e-4))[1]

    ref = rate(Z) - np.mean([rate(Z[y == c]) for c in range(4)])
    ws = Workspace(X, y)
    assert transrate(ws) == pytest.approx(ref, rel=1e-10)
    assert "scatter_T" not in ws._cache and ws._cache["scatter_T_varying"].shape == (25, 25)


def test_a_scatter_formed_by_the_collapse_metrics_is_reused_by_the_scores():
    from nctransfer.metrics import prepare

    X, y, live = _with_constant_columns(500, 60, 20, seed=12)
    ws = Workspace(X, y)
    assert not ws.scatter_formed
    T = prepare(ws).total_covariance()  # the metrics form the workspace's one scatter
    assert ws.scatter_formed and "scatter_T" not in ws._cache
    got, S = ws.varying_scatter()  # sliced from it, no second pass over the samples
    np.testing.assert_array_equal(got, live)
    np.testing.assert_array_equal(S, ws.scatter[np.ix_(live, live)])
    np.testing.assert_allclose(S, (T * ws.n)[np.ix_(live, live)], rtol=1e-12)
    assert hscore(ws) == pytest.approx(hscore(Workspace(X, y)), rel=1e-10)
