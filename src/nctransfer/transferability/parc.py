"""PARC: pairwise annotation representation comparison (docs/methods.md#parc; optional extra).

Bolya, Mittapalli & Hoffman, "Scalable Diverse Model Selection for Accessible Transfer Learning", NeurIPS 2021.

Features are reduced by PCA to 32 dimensions (default: as the authors' code does it, scikit-learn's randomized
PCA with one power iteration and random state 1919; ``pca="exact"``: an exact, deterministic PCA) and standardised
per dimension; the representation dissimilarity
matrix is ``1 - corr(f_i, f_j)`` over pairs of samples (Pearson correlation across the dimensions), the label
dissimilarity matrix is ``1 - corr(onehot(y_i), onehot(y_j))`` (0 within a class, ``1 + 1/(K-1)`` across classes),
and ``PARC = 100 * Spearman(lower triangle of both)``.

Because the label matrix takes two values, Spearman's rho reduces to a rank-biserial statistic: the rank sum of the
cross-class pairs among all pairs. Above ``exact_pairs`` pairs it is computed in row blocks against the sorted
within-class dissimilarities (memory ``O(N * block + within pairs)`` instead of the ``O(N^2)`` matrices of the
reference code; ties between dissimilarities, which have probability zero for continuous features, are ranked
by mid-ranks within the cross/within comparison but not in the rank variance). Below it, the same rank-sum identity
on the whole triangle with the tie correction of the rank variance: the value of ``scipy.stats.spearmanr`` on the
two triangles (equal to it to rounding, ties included) at about a third of its time, since only the two groups of
pairs are sorted and merged instead of ranking both triangles.

Relation to the authors' released code: its randomized PCA with a single power iteration only approximates the
leading subspace when the spectrum decays slowly (typical of wide real features): that approximation is why an
exact PCA gives values about 3% away from the code's on real EfficientNet-Lite taps. The default reproduces the
code (``pca="randomized"``, identical to it when ``n_components + 10 >= d``, where the random range covers every
dimension); ``pca="exact"`` is the deterministic variant. The correlation between rows after per-dimension
standardisation depends on the signs of the components; both variants use scikit-learn's sign convention.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from scipy.stats import spearmanr
from sklearn.decomposition import PCA
from sklearn.model_selection import train_test_split

from nctransfer.exceptions import InputValueError, UndefinedMetricWarning
from nctransfer.transferability._common import (
    blas_limited,
    check_positive_int,
    lapack_threads,
    pca_dims,
    warn,
    workspace,
)
from nctransfer.transferability.base import register


_PCA = ("randomized", "exact")


def _randomized_pca(X: np.ndarray, k: int, seed: int) -> np.ndarray:
    """PCA scores ``[N, k]`` as the authors' code computes them: scikit-learn's randomized solver, one power
    iteration, a fixed random state."""
    with lapack_threads(X.shape[1]):
        return PCA(n_components=k, svd_solver="randomized", random_state=int(seed),
                   iterated_power=1).fit_transform(X)


def _row_normalised(F: np.ndarray) -> np.ndarray:
    """Standardise columns (population std, zero-variance columns left unscaled as scikit-learn), then centre each
    row and scale it to unit norm: ``corr(f_i, f_j) = z_i . z_j``."""
    F = F - F.mean(0)
    sd = F.std(0)
    sd[sd == 0] = 1.0
    F = F / sd
    F = F - F.mean(1, keepdims=True)
    nrm = np.linalg.norm(F, axis=1, keepdims=True)
    nrm[nrm == 0] = 1.0
    return F / nrm


def _parc_exact(Zn: np.ndarray, codes: np.ndarray, K: int) -> float:
    n = Zn.shape[0]
    iu = np.triu_indices(n, 1)
    r1 = (1.0 - Zn @ Zn.T)[iu]
    r2 = np.where(codes[iu[0]] == codes[iu[1]], 0.0, 1.0 + 1.0 / (K - 1))
    if np.all(r2 == r2[0]):
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(spearmanr(r1, r2)[0])


def _parc_ranksum(Zn: np.ndarray, codes: np.ndarray, K: int) -> float:
    """Spearman's rho of the two triangles (the value of ``_parc_exact``, ties included) without ranking both:
    the label dissimilarity takes two values, so rho is Pearson's correlation of the mid-ranks ``R`` of the
    representation dissimilarities with the cross-class indicator ``B``::

        rho = (sum_cross R / n - (n + 1) p / 2) / sqrt(var(R) p (1 - p)),   p = n_cross / n,
        sum_cross R = n_cross (n_cross + 1) / 2 + #{within < cross} + #{within = cross} / 2,
        var(R) = (n^2 - 1) / 12 - sum_ties (t^3 - t) / (12 n)

    over the ``n = N (N - 1) / 2`` pairs. Two sorts (within- and cross-class pairs) and a merge replace the two
    full rankings, the ``O(N^2)`` index arrays and the copies of ``scipy.stats.spearmanr``."""
    n = Zn.shape[0]
    G = Zn @ Zn.T  # the same products as ``_parc_exact``: equal dissimilarities stay equal (ties)
    cols = np.arange(n)
    upper = cols[None, :] > cols[:, None]
    same_class = codes[:, None] == codes[None, :]
    cross_mask = upper & ~same_class
    within_mask = upper & same_class
    same = np.sort(1.0 - G[within_mask])
    cross = np.sort(1.0 - G[cross_mask])
    n0, n1 = len(same), len(cross)
    if n0 == 0 or n1 == 0:
        return float("nan")
    lo = np.searchsorted(same, cross, side="left")
    hi = np.searchsorted(same, cross, side="right")
    eq = hi - lo
    u = float(lo.sum()) + 0.5 * float(eq.sum())
    ties = 0.0
    if eq.any() or np.any(same[1:] == same[:-1]) or np.any(cross[1:] == cross[:-1]):
        t = np.unique(np.concatenate([same, cross]), return_counts=True)[1].astype(np.float64)
        ties = float(np.sum(t ** 3 - t))
    return _rank_biserial_rho(u, n0, n1, ties)


def _rank_biserial_rho(u: float, n0: int, n1: int, ties: float = 0.0) -> float:
    """Spearman's rho of the dissimilarity ranks with the cross-class indicator from ``u = #{within < cross} +
    #{within = cross} / 2`` over the ``n0`` within- and ``n1`` cross-class pairs (``ties``: ``sum (t^3 - t)`` over
    groups of equal dissimilarities, the rank-variance correction; NaN when the ranks do not vary)."""
    n_all = n0 + n1
    var_r = (n_all ** 2 - 1) / 12.0 - ties / (12.0 * n_all)
    if var_r <= 0:
        return float("nan")
    p = n1 / n_all
    cov = (n1 * (n1 + 1) / 2.0 + u) / n_all - (n_all + 1) / 2.0 * p  # sum of the cross pairs' mid-ranks / n_all
    return float(cov / np.sqrt(var_r * p * (1 - p)))


def _parc_blocked(Zn: np.ndarray, codes: np.ndarray, K: int, block: int = 1024) -> float:
    n = Zn.shape[0]
    order = np.argsort(codes, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(codes, minlength=K))])
    within = []
    for k in range(K):
        idx = order[bounds[k]:bounds[k + 1]]
        if len(idx) > 1:
            Zk = Zn[idx]
            iu = np.triu_indices(len(idx), 1)
            within.append((1.0 - Zk @ Zk.T)[iu])
    same = np.sort(np.concatenate(within)) if within else np.zeros(0)
    n0 = len(same)
    n_all = n * (n - 1) // 2
    n1 = n_all - n0
    if n0 == 0 or n1 == 0:
        return float("nan")
    u = 0.0  # sum over cross pairs of (#within below) + (#within equal) / 2
    for start in range(0, n, block):
        stop = min(start + block, n)
        D = 1.0 - Zn[start:stop] @ Zn.T
        rows = np.arange(start, stop)[:, None]
        mask = (np.arange(n)[None, :] > rows) & (codes[start:stop, None] != codes[None, :])
        v = np.sort(D[mask])  # sorted needles: each binary search starts where the previous one ended (3-10x faster)
        lo = np.searchsorted(same, v, side="left")
        hi = np.searchsorted(same, v, side="right")
        u += float(lo.sum()) + 0.5 * float((hi - lo).sum())
    return _rank_biserial_rho(u, n0, n1)  # ties ranked by mid-ranks, not in the rank variance (module doc)


@blas_limited
def parc(X: Any, y: Any = None, *, n_components: int | None = 32, exact_pairs: int = 2_000_000,
         max_samples: int | None = None, seed: int = 0, pca: str = "randomized",
         pca_seed: int = 1919) -> float:
    """PARC score (docs/methods.md#parc).

    Args:
        X: features ``[N, d]``; y: labels ``[N]``.
        n_components: PCA dimensions (32 as in the reference code); with fewer features or samples
            ``min(n_components, d, N - 1)`` with a :class:`NumericalWarning`; ``None``: no PCA.
        exact_pairs: up to this many sample pairs the exact rank-sum identity on all pairs (the value of
            ``scipy.stats.spearmanr``, ties included); above, the blocked rank-sum computation (same value without
            ties).
        max_samples: optional stratified random subsample of this many samples (seeded) -- the reference code
            intended to subsample above 15 000 samples. Default: all samples.
        seed: seed of the subsample.
        pca: ``"randomized"`` (default, the authors' code: scikit-learn's randomized PCA, ``iterated_power=1``,
            ``random_state=pca_seed``) or ``"exact"`` (deterministic full eigendecomposition).
        pca_seed: random state of the randomized PCA (1919 in the authors' code).

    Returns:
        PARC in ``[-100, 100]`` (higher = better). NaN with an :class:`UndefinedMetricWarning` when every class
        has one sample (no within-class pair).

    Cost: ``O(N^2 p)`` time, ``O(N * 1024 + within-class pairs)`` memory.
    """
    fname = "parc"
    if pca not in _PCA:
        raise InputValueError(f"parc: pca must be one of {_PCA}; got {pca!r}.")
    exact_pairs = check_positive_int(exact_pairs, "exact_pairs", fname, minimum=0)
    ws = workspace(X, y, fname)
    if n_components is None:
        F = ws.Xc
    else:
        k = pca_dims(ws, check_positive_int(n_components, "n_components", fname), fname,
                      rule="available")
        F = ws.pca(k)[0] if pca == "exact" else _randomized_pca(ws.X, k, pca_seed)
    codes = ws.codes
    if max_samples is not None:
        max_samples = check_positive_int(max_samples, "max_samples", fname, minimum=ws.K)
        if max_samples < ws.n:
            keep, _ = train_test_split(np.arange(ws.n), train_size=max_samples, random_state=seed,
                                       stratify=codes if ws.counts.min() >= 2 else None)
            keep = np.sort(keep)
            F, codes = F[keep], codes[keep]
    Zn = _row_normalised(np.asarray(F, dtype=np.float64))
    n = Zn.shape[0]
    if n * (n - 1) // 2 <= exact_pairs:
        rho = _parc_ranksum(Zn, codes, ws.K)
    else:
        rho = _parc_blocked(Zn, codes, ws.K)
    if not np.isfinite(rho):
        warn("parc is undefined: no pair of samples shares a class (or all do); returning NaN.",
             UndefinedMetricWarning, stacklevel=4)
        return float("nan")
    return 100.0 * rho


parc = register("parc", title="PARC", spec="docs/methods.md#parc",
         reference="Bolya, Mittapalli & Hoffman, NeurIPS 2021",
         passes=2, expensive=True, randomized=True, cost="O(N^2 p)")(parc)

__all__ = ["parc"]
