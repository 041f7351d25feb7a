"""H-score and regularised H-score (docs/methods.md#hscore).

H-score (Bao, Li, Huang, Zhang, Zheng, Zamir & Guibas, "An Information-Theoretic Approach to Transferability in
Task Transfer Learning", ICIP 2019)::

    H = tr(cov(X)^+ cov(g)),   g_i = mu_{y_i}   (the class-conditional mean of sample i)

Both covariances use the same normalisation in the reference code (``1/(N-1)``), so ``H = tr(Sigma_T^+ Sigma_Bw)``
and ``VCI = 1 - H / min(d, K-1)`` on the same features (docs/methods.md#vci #hscore) -- a cross-check between two
independently written functions. H is a function of the streaming statistics (one pass).

Regularised H-score (Ibrahim, Ponomareva & Mazumder, "Newer is Not Always Better: Rethinking Transferability
Metrics, Their Peculiarities, Stability and Performance", ICLR 2023 / ECML 2022): features centred,
Ledoit-Wolf shrunk covariance ``cov_a = (1 - a) Sigma_T + a (tr Sigma_T / d) I`` with the Ledoit-Wolf
shrinkage ``a``, and ``H_reg = tr(cov_a^+ (1 - a) cov(g))``. As in the authors' code, ``cov(g)`` uses
``1/(N-1)`` while the Ledoit-Wolf covariance uses ``1/N`` (a constant factor ``N/(N-1)`` per dataset).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nctransfer.exceptions import InputValueError
from nctransfer.stats.feature_stats import FeatureStats
from nctransfer.transferability._common import (
    blas_limited,
    EPS,
    Workspace,
    eigh,
    solve_lower,
    well_conditioned_cholesky,
    workspace,
)
from nctransfer.transferability.base import register


def _hscore_stats(stats: FeatureStats, rcond: float | None) -> float:
    stats._require(2)
    n = stats.n_
    T = stats.sigma_T()
    o = stats._order()
    counts = stats.counts_[o].astype(np.float64)
    means = stats.sums_[o] / counts[:, None]
    D = (means - stats.sums_.sum(0) / n) * np.sqrt(counts / n)[:, None]  # Sigma_Bw = D^T D
    tol = max(n, T.shape[0]) * EPS if rcond is None else rcond
    return _trace_pinv_quad(T, D, tol, None)


def _trace_pinv_quad(T: np.ndarray, D: np.ndarray, rtol: float, ws: Workspace | None,
                     key: str = "sigma_T") -> float:
    """``tr(T^+ D^T D)`` with eigenvalues of ``T`` below ``rtol * max`` dropped (Cholesky when it is safe)."""
    L = ws.cached(f"{key}_chol_{rtol:g}", lambda: well_conditioned_cholesky(T, rtol)) if ws is not None \
        else well_conditioned_cholesky(T, rtol)
    if L is not None:
        return float(np.sum(solve_lower(L, D.T) ** 2))
    w, V = ws.cached(f"{key}_eigh", lambda: eigh(T)) if ws is not None else eigh(T)
    keep = w > rtol * max(w[-1], 0.0)
    P = D @ V[:, keep]
    return float(np.sum(np.einsum("kj,kj->j", P, P) / w[keep]))


@blas_limited
def hscore(X_or_stats: Any, y: Any = None, *, rcond: float | None = None) -> float:
    """H-score ``tr(cov(X)^+ cov(g))`` (docs/methods.md#hscore).

    Args:
        X_or_stats: features ``[N, d]`` with ``y``, or a :class:`~nctransfer.stats.FeatureStats`.
        y: labels ``[N]``.
        rcond: relative eigenvalue cut-off of the pseudo-inverse of ``Sigma_T`` (default ``max(N, d) * eps``).
            The pseudo-inverse is computed by a Cholesky solve when ``Sigma_T`` is safely well conditioned (LAPACK
            condition estimate), else from its eigendecomposition; when ``N < d`` in the ``N x N`` Gram domain.

    Returns:
        H in ``[0, min(d, K-1)]`` (higher = better).

    Cost: ``O(N d^2 + d^3 / 3)`` (Cholesky) or ``O(N d^2 + d^3)`` (eigendecomposition); ``O(N^2 d + N^3)`` when
    ``N < d``.

    Examples:
        >>> import numpy as np
        >>> X = np.array([[0.], [1.], [3.], [4.]]); y = [0, 0, 1, 1]
        >>> round(hscore(X, y), 6)  # Sigma_Bw / Sigma_T = 2.25 / 2.5
        0.9
    """
    if rcond is not None and not (0.0 <= float(rcond) < 1.0):
        raise InputValueError(f"hscore: rcond must be in [0, 1); got {rcond!r}.")
    if isinstance(X_or_stats, FeatureStats):
        if y is not None:
            raise InputValueError("hscore: pass either a FeatureStats object or (X, y), not both.")
        return _hscore_stats(X_or_stats, rcond)
    ws = workspace(X_or_stats, y, "hscore")
    tol = max(ws.n, ws.d) * EPS if rcond is None else float(rcond)
    if ws.gram_domain:
        # tr((Xc^T Xc)^+ Xc^T P Xc) = tr(Pi P): Pi the projector on the column space of Xc, P the class averaging
        w, U = ws.eigh_T()
        keep = w > tol * max(w[-1], 0.0)
        proj = ws.class_sum(U[:, keep])  # [K, r]
        return float(np.sum(proj ** 2 / ws.counts[:, None]))
    # constant features are exact zero rows and columns of Sigma_T and zero columns of D: drop them (exact)
    live, S = ws.varying_scatter()
    D = ws.centred_class_means * np.sqrt(ws.priors)[:, None]
    if live is None:
        return _trace_pinv_quad(S / ws.n, D, tol, ws)
    return _trace_pinv_quad(S / ws.n, D[:, live], tol, ws, key="sigma_T_varying")


def ledoit_wolf_shrinkage(ws: Workspace) -> float:
    """Ledoit-Wolf shrinkage of the centred features, as :func:`sklearn.covariance.ledoit_wolf_shrinkage`.

    Uses ``sum_n ||x_n||^4`` (``O(N d)``) instead of scikit-learn's blocked ``X2^T X2`` products.
    """
    def compute() -> float:
        n, d = ws.n, ws.d
        if d == 1:
            return 0.0  # as scikit-learn: nothing to shrink
        Xc = ws.Xc
        sq = np.einsum("ij,ij->i", Xc, Xc)
        mu = sq.sum() / n / d
        if ws.gram_domain:
            G = ws.gram_c
            delta = float(np.sum(G * G)) / n ** 2  # ||Xc^T Xc||_F = ||Xc Xc^T||_F
        else:
            delta = float(np.sum(ws.scatter_T ** 2)) / n ** 2
        beta = (float(np.sum(sq ** 2)) / n - delta) / (d * n)
        delta = (delta - d * mu ** 2) / d
        beta = min(beta, delta)
        return 0.0 if beta == 0 else float(beta / delta)
    return ws.cached("ledoit_wolf", compute)


@blas_limited
def reg_hscore(X: Any, y: Any = None, *, rcond: float | None = None) -> float:
    """Regularised H-score ``tr(cov_a^+ (1 - a) cov(g))`` with Ledoit-Wolf shrinkage ``a`` (docs/methods.md#hscore).

    Args:
        X: features ``[N, d]`` (per-sample data: the Ledoit-Wolf shrinkage needs fourth moments).
        y: labels ``[N]``.
        rcond: relative cut-off of the pseudo-inverse (only matters when ``a = 0``; default ``max(N, d) * eps``).

    Returns:
        Regularised H-score, ``>= 0`` (higher = better).

    Cost: ``O(N d^2 + d^3 / 3)``; ``O(N^2 d + N^3)`` when ``N < d``.
    """
    if rcond is not None and not (0.0 <= float(rcond) < 1.0):
        raise InputValueError(f"reg_hscore: rcond must be in [0, 1); got {rcond!r}.")
    ws = workspace(X, y, "reg_hscore")
    n, d = ws.n, ws.d
    a = ledoit_wolf_shrinkage(ws)
    tol = max(n, d) * EPS if rcond is None else float(rcond)
    factor = (1.0 - a) * n / max(n - 1, 1)  # (1 - a) cov(g) with cov(g) = N/(N-1) Sigma_Bw
    if ws.gram_domain:
        # cov_a = (1-a) Xc^T Xc / N + a mu I: eigenvalues (1-a) w_j / N + a mu on the span of Xc, a mu elsewhere.
        # Sigma_Bw = Xc^T P Xc / N lies in that span, so only the Gram eigenpairs are needed.
        w, U = ws.eigh_T()
        mu = float(np.sum(np.maximum(w, 0.0))) / n / d
        lam = (1.0 - a) * np.maximum(w, 0.0) / n + a * mu
        keep = lam > tol * max(lam.max(), 0.0)
        # tr(cov_a^+ Xc^T P Xc / N) = sum_j (w_j / N) * (u_j^T P u_j) / lam_j
        proj = ws.class_sum(U[:, keep])
        quad = np.sum(proj ** 2 / ws.counts[:, None], axis=0)
        return float(factor * np.sum(quad * np.maximum(w[keep], 0.0) / n / lam[keep]))
    T = ws.scatter_T / n
    mu = float(np.trace(T)) / d
    C = (1.0 - a) * T
    C.flat[:: d + 1] += a * mu
    D = ws.centred_class_means * np.sqrt(ws.priors)[:, None]
    return factor * _trace_pinv_quad(C, D, tol, ws, key=f"lw_cov_{a:.17g}")


hscore = register("hscore", title="H-score", spec="docs/methods.md#hscore",
         reference="Bao, Li, Huang, Zhang, Zheng, Zamir & Guibas, ICIP 2019",
         accepts_stats=True, passes=1, cost="O(N d^2 + d^3)")(hscore)
reg_hscore = register("reg_hscore", title="Regularised H-score", spec="docs/methods.md#hscore",
         reference="Ibrahim, Ponomareva & Mazumder, ICLR 2023 (Ledoit-Wolf shrinkage)",
         passes=1, cost="O(N d^2 + d^3)")(reg_hscore)

__all__ = ["hscore", "reg_hscore", "ledoit_wolf_shrinkage"]
