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
