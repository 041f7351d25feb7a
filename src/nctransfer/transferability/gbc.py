"""GBC: Gaussian Bhattacharyya coefficient class separability (docs/methods.md#gbc).

Pandy, Agostinelli, Uijlings, Ferrari & Mensink, "Transferability Estimation using Bhattacharyya Class
Separability", CVPR 2022.

Features are projected by PCA to 64 dimensions; each class is a Gaussian with its mean and per-dimension
population variance floored at 1e-4, either ``spherical`` (default: the variances averaged to one scalar per
class) or ``diagonal``. With ``s = (s_i + s_j) / 2`` the Bhattacharyya distance is::

    D_B(i, j) = 1/8 sum (mu_i - mu_j)^2 / s + 1/2 [ sum log s - 1/2 sum log s_i - 1/2 sum log s_j ]

and ``GBC = - sum_i sum_{j != i} exp(-D_B(i, j))`` over ordered pairs (in ``[-K(K-1), 0]``; 0 = perfectly
separable). As in the authors' code, for spherical Gaussians the log terms are those of the scalar variances
(``sum`` over one element), while the mean term sums over all dimensions.

Relation to the authors' released code: the formulas are the code's (checked on hand-computed cases in the
tests), including its exact PCA (scikit-learn's ``PCA(n_components=64, svd_solver='full')``; equal to 3e-15 on real
taps in float64). Differences: the code computes in float32 (TensorFlow), here float64; with fewer features or
samples ``min(64, d, N - 1)`` dimensions are used with a warning.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nctransfer.exceptions import InputValueError
from nctransfer.stats.labelled import class_indicator
from nctransfer.transferability._common import (
    blas_limited,
    check_positive_float,
    check_positive_int,
    pca_dims,
    workspace,
)
from nctransfer.transferability.base import register

_GAUSSIANS = ("spherical", "diagonal")


def gbc_from_features(Z: np.ndarray, codes: np.ndarray, K: int, counts: np.ndarray, *,
                      gaussian: str = "spherical", var_floor: float = 1e-4) -> float:
    """GBC of (already reduced) features ``Z [N, p]`` (no PCA, no input checks)."""
    ind = class_indicator(codes, K)
    mu = np.asarray(ind @ Z) / counts[:, None]
    # per-class population variance, two-pass (exact)
    resid = Z - mu[codes]
    var = np.asarray(ind @ (resid * resid)) / counts[:, None]
    var = np.maximum(var, var_floor)
    if gaussian == "spherical":
        s_c = var.mean(1)  # [K]
        s = (s_c[:, None] + s_c[None, :]) / 2.0
        sqd = _pairwise_sq(mu)
        db = sqd / s / 8.0 + 0.5 * (np.log(s) - 0.5 * np.log(s_c)[:, None] - 0.5 * np.log(s_c)[None, :])
    else:
        logv = np.log(var)
        db = np.empty((K, K))
        for i in range(K):
            s = (var[i] + var) / 2.0  # [K, p]
            db[i] = (np.sum((mu[i] - mu) ** 2 / s, axis=1) / 8.0
                     + 0.5 * (np.log(s).sum(1) - 0.5 * logv[i].sum() - 0.5 * logv.sum(1)))
    bc = np.exp(-db)
    np.fill_diagonal(bc, 0.0)
    return float(-bc.sum())


def _pairwise_sq(M: np.ndarray) -> np.ndarray:
    D = np.empty((M.shape[0], M.shape[0]))
    for i in range(M.shape[0]):
        diff = M - M[i]
        D[i] = np.einsum("kd,kd->k", diff, diff)
    return D


@blas_limited
def gbc(X: Any, y: Any = None, *, gaussian: str = "spherical", n_components: int | None = 64,
        var_floor: float = 1e-4) -> float:
    """GBC score (docs/methods.md#gbc).

    Args:
        X: features ``[N, d]``; y: labels ``[N]``.
        gaussian: ``"spherical"`` (default; one variance per class) or ``"diagonal"`` (per-dimension variances).
        n_components: PCA dimensions (64 as in the paper). With fewer features or samples,
            ``min(n_components, d, N - 1)`` dimensions with a :class:`NumericalWarning`. ``None``: no PCA.
        var_floor: floor of the per-dimension variances (1e-4 in the authors' code).

    Returns:
        GBC in ``[-K(K-1), 0]`` (higher = better; each ordered pair of identical classes contributes -1, two
        far-apart classes contribute ~0).

    Cost: the exact PCA on the ``m`` varying columns (constant features dropped, exactly): for ``N >= 2 m`` the
    ``m x m`` scatter (``O(N m^2)``) and its top eigenpairs (LAPACK or ARPACK), else block Krylov iteration on the
    centred features (``O(N m p)`` per step); then ``O(N p + K^2 p)``.

    Examples:
        >>> import numpy as np
        >>> X = np.array([[0.], [1.], [0.], [1.]]); y = [0, 0, 1, 1]
        >>> gbc(X, y, n_components=None)  # two identical classes: two ordered pairs, each -1
        -2.0
    """
    fname = "gbc"
    if gaussian not in _GAUSSIANS:
        raise InputValueError(f"gbc: gaussian must be one of {_GAUSSIANS}; got {gaussian!r}.")
    var_floor = check_positive_float(var_floor, "var_floor", fname)
    ws = workspace(X, y, fname)
    if n_components is None:
        Z = ws.Xc
    else:
        k = pca_dims(ws, check_positive_int(n_components, "n_components", fname), fname,
                      rule="available")
        ws.seed_top_eigh(k)
        Z = ws.pca(k)[0]
    return gbc_from_features(Z, ws.codes, ws.K, ws.counts, gaussian=gaussian, var_floor=var_floor)


gbc = register("gbc", title="GBC", spec="docs/methods.md#gbc",
         reference="Pandy, Agostinelli, Uijlings, Ferrari & Mensink, CVPR 2022",
         passes=2, cost="O(N d^2 + d^3 + K^2 p)")(gbc)

__all__ = ["gbc", "gbc_from_features"]
