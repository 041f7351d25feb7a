"""Spearman rank correlation of paired values: the one helper behind layer curves, study plots and evaluation."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np


def spearman(x: Any, y: Any, *, min_pairs: int = 3) -> tuple[float, float, int]:
    """Spearman's rank correlation of the pairs where both values are finite (``None`` counts as missing).

    ``rho`` is Pearson's correlation of the ranks (average ranks for ties), as ``scipy.stats.spearmanr``.

    Args:
        x, y: equally long sequences of numbers.
        min_pairs: fewer finite pairs than this give NaN.

    Returns:
        ``(rho, p_value, n_pairs)``; ``rho`` and ``p_value`` are NaN with fewer than ``min_pairs`` finite pairs or
        when either side is constant over them.

    Examples:
        >>> spearman([1, 2, 3, 4, 5], [5, 6, 7, 8, 7])[0]
        0.8207826816681233
        >>> spearman([1, 2, None], [3, 4, 5])
        (nan, nan, 2)
    """
    from scipy.stats import spearmanr  # deferred: `import nctransfer` loads this module; scipy.stats costs ~0.8 s

    a = np.array([np.nan if v is None else v for v in x], dtype=float)
    b = np.array([np.nan if v is None else v for v in y], dtype=float)
    ok = np.isfinite(a) & np.isfinite(b)
    n = int(ok.sum())
    if n < max(int(min_pairs), 2) or np.ptp(a[ok]) == 0 or np.ptp(b[ok]) == 0:
        return float("nan"), float("nan"), n
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # p-value of very few pairs
        res = spearmanr(a[ok], b[ok])
    return float(res.statistic), float(res.pvalue), n
