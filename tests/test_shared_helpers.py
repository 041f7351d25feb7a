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
