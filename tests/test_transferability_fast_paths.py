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
