"""NCTI: neural-collapse transferability index (docs/methods.md#ncti; Wang et al., ICCV 2023).

Wang, Luo, Zheng, Huang & Baktashmotlagh, "How Far Pre-trained Models Are from Neural Collapse on the Target
Dataset Informs their Transferability", ICCV 2023. The formulas follow the authors' public code, which
reproduces the paper's tables (the paper's own equations are garbled and differ):

- PCA of ``X`` to 64 dimensions; requires ``min(N, d) >= 64``, otherwise ``min(N, d) - 1`` with a warning.
- Shrinkage ``t = max(exp(-sum of the top-32 PCA explained variances), 1e-10)`` (Wang et al., ICCV 2023, eq. 13); if ``t`` is at
  the floor: plain LDA (scikit-learn's ``svd`` solver), else LDA with shrinkage ``t`` (scikit-learn's ``eigen``
  solver). The within-class covariance is the population one (``1/N``), as scikit-learn >= 1.5's ``svd`` solver;
  older versions, which the authors used, normalised the plain solver by ``1/(N-K)`` -- a factor
  ``sqrt((N-K)/N)`` on ``S_seli`` and slightly sharper posteriors.
- ``Z`` = LDA projection of the PCA features (``min(K-1, 64)`` dims), centred: **S_seli = ||Z||_*** (nuclear norm;
  higher = closer to the SELI geometry).
- ``P`` = LDA posterior probabilities ``[N, K]``: **S_ncc = mean_i P[i, y_i]** (higher = nearest-centre rule fits).
- **S_vc = log sum_k ||P_k||_*** with ``P_k`` the rows of class ``k`` (lower = more within-class collapse).
- Pool combination over the M candidate models of one target dataset:
  ``NCTI_m = minmax(S_ncc)_m + minmax(S_seli)_m - minmax(S_vc)_m`` (each term min-max normalised across the models;
  a single model has no NCTI; a term equal for every model contributes 0).

Differences from the authors' code: the PCA here is exact (deterministic); theirs is scikit-learn's randomized
solver without a seed at these sizes, so their values vary slightly between runs.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd

from nctransfer.transferability._common import (
    blas_limited,
    Workspace,
    check_positive_float,
    check_positive_int,
    generalized_eigvecs,
    iter_pool,
    lda_logits,
    minmax,
    nuclear_norm,
    pca_dims,
    require_pool,
    shrink,
    softmax,
    workspace,
)
from nctransfer.transferability.base import register

TERMS = ("S_seli", "S_ncc", "S_vc")


def _lda_in_pca(Z: np.ndarray, ws: Workspace, t: float, plain: bool) -> tuple[np.ndarray, np.ndarray]:
    """``(projection [N, m], posterior [N, K])`` of LDA on PCA scores ``Z [N, p]`` (centred)."""
    n, p = Z.shape
    K = ws.K
    Mc = ws.class_sum(Z) / ws.counts[:, None]
    R = Z - Mc[ws.codes]
    Sw = R.T @ R / n
    Sw = (Sw + Sw.T) * 0.5
    Sbw = (Mc.T * ws.priors) @ Mc
    if plain:
        # scikit-learn's svd solver: whitening by the (population) within-class covariance; discriminant directions
        # = the non-null between-class directions in the whitened space (singular values > 1e-4 relative)
        V = generalized_eigvecs(Sbw, Sw)
        ev = np.einsum("ij,jk,ki->i", V.T, Sbw, V)
        m = int(min(K - 1, p, np.sum(ev > 1e-8 * max(ev.max(), 0.0))))
        S_post = Sw
    else:
        Sw_t = shrink(Sw, t)
        St_t = shrink((Z.T @ Z) / n, t)
        V = generalized_eigvecs(St_t - Sw_t, Sw_t)
        m = min(K - 1, p)
        S_post = Sw_t
    proj = Z @ V[:, :m]
    post = softmax(lda_logits(Z, Mc, S_post, ws.priors, ws.fname))
    return proj, post


@blas_limited
def ncti_terms(X: Any, y: Any = None, *, n_components: int = 64, n_top: int = 32,
               min_shrinkage: float = 1e-10) -> dict[str, float]:
    """The three raw NCTI terms of one model (docs/methods.md#ncti).

    Args:
        X: features ``[N, d]``; y: labels ``[N]``.
        n_components: PCA dimensions (64 in the authors' code; ``min(N, d) - 1`` with a warning if fewer).
        n_top: number of leading explained variances in the shrinkage ``exp(-sum)`` (32).
        min_shrinkage: floor of the shrinkage; at the floor plain LDA is used (1e-10).

    Returns:
        ``{"S_seli": ||Z||_*, "S_ncc": mean true-class posterior, "S_vc": log sum_k ||P_k||_*,
        "shrinkage": t, "n_components": p}``. Higher ``S_seli`` and ``S_ncc`` and lower ``S_vc`` predict better
        transfer; only their pool combination (:func:`ncti`) is the NCTI score.

    Cost: the exact PCA on the ``m`` varying columns (constant features dropped, exactly): for ``N >= 2 m`` the
    ``m x m`` scatter (``O(N m^2)``) and its top eigenpairs, else block Krylov iteration on the centred features
    (``O(N m)`` per product; ``O(N^2 d + N^3)`` when ``N < d``); then ``O(N p^2 + N K^2)``.
    """
    fname = "ncti"
    n_components = check_positive_int(n_components, "n_components", fname)
    n_top = check_positive_int(n_top, "n_top", fname)
    min_shrinkage = check_positive_float(min_shrinkage, "min_shrinkage", fname)
    ws = workspace(X, y, fname)
    p = pca_dims(ws, n_components, fname)
    ws.seed_top_eigh(p)
    Z, ev = ws.pca(p)
    t = float(max(np.exp(-np.sum(ev[:n_top])), min_shrinkage))
    plain = t <= min_shrinkage
    proj, P = _lda_in_pca(Z, ws, t, plain)
    proj = proj - proj.mean(0)
    seli = nuclear_norm(proj)
    ncc = float(P[np.arange(ws.n), ws.codes].mean())
    order = np.argsort(ws.codes, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(ws.codes, minlength=ws.K))])
    vc_sum = sum(nuclear_norm(P[order[bounds[k]:bounds[k + 1]]]) for k in range(ws.K))
    return {"S_seli": seli, "S_ncc": ncc, "S_vc": float(np.log(vc_sum)), "shrinkage": t, "n_components": p}


def ncti_combine(terms: Mapping[str, Mapping[str, float]]) -> "Any":
    """Pool combination ``minmax(S_ncc) + minmax(S_seli) - minmax(S_vc)`` (docs/methods.md#ncti).

    Args:
        terms: ``{model: ncti_terms(...)}`` for at least two models of the same target dataset.

    Returns:
        ``pandas.DataFrame`` indexed by model with the raw terms ``S_seli, S_ncc, S_vc``, their min-max
        normalised values ``seli, ncc, vc`` and ``ncti`` (in ``[-1, 2]``; higher = better).
    """
    names = list(terms)
    require_pool(names, "ncti", "NCTI")
    df = pd.DataFrame({t: [float(terms[m][t]) for m in names] for t in TERMS}, index=names)
    df["seli"] = minmax(df["S_seli"].to_numpy())
    df["ncc"] = minmax(df["S_ncc"].to_numpy())
    df["vc"] = minmax(df["S_vc"].to_numpy())
    df["ncti"] = df["ncc"] + df["seli"] - df["vc"]
    return df


@blas_limited
def ncti(pool: Any, y: Any = None, **options: Any) -> "Any":
    """NCTI of every model of a pool (docs/methods.md#ncti).

    Args:
        pool: ``{name: (X, y)}`` (or ``{name: X}`` with the shared ``y``, or a list) -- at least two models whose
            features are computed on the same target dataset.
        y: shared labels when the pool holds bare feature arrays.
        **options: :func:`ncti_terms` options (``n_components``, ``n_top``, ``min_shrinkage``).

    Returns:
        ``pandas.DataFrame`` (see :func:`ncti_combine`); ``df["ncti"]`` is the score.

    Raises:
        InputValueError: fewer than two models (NCTI is pool-relative).
    """
    items = iter_pool(pool, y, "ncti")
    require_pool([n for n, _, _ in items], "ncti", "NCTI")
    return ncti_combine({name: ncti_terms(X, yy, **options) for name, X, yy in items})


ncti_terms = register("ncti", title="NCTI", spec="docs/methods.md#ncti",
         reference="Wang, Luo, Zheng, Huang & Baktashmotlagh, ICCV 2023",
         pool_relative=True, combine=ncti_combine, passes=3,
         cost="O(N d^2 + d^3) PCA + O(N p^2 + N K^2)")(ncti_terms)

__all__ = ["ncti", "ncti_terms", "ncti_combine", "TERMS"]
