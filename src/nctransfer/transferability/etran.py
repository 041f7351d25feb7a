"""ETran: energy-based transferability (docs/methods.md#etran).

Gholami, Akbari, Wang & Zhang, "ETran: Energy-Based Transferability Estimation", ICCV 2023.

Two per-model terms, combined over the pool:

- **energy**: ``E_i = logsumexp_j x_ij`` over the feature dimensions (the code's "energy score"); the term is the
  mean ``E_i`` over the 0.5% of samples with the lowest ``E_i`` (the code's ``'bot'`` tail; at least one sample).
- **lda**: mean true-class posterior of a linear discriminant. Default (``lda_covariance="identity"``): what the
  authors' released code computes, an isotropic nearest-class-mean softmax
  ``p(k | x) = softmax_k(x . mu_k - |mu_k|^2 / 2 + log pi_k)``. Option ``lda_covariance="shrunk"``: the variant
  the paper describes, LDA with the SFDA-style shrunk pooled within-class covariance (first pass only, no ConfMix).
- pool combination: ``ETran = 0.15 minmax(energy) + 0.85 minmax(lda)``.

Why the default is the isotropic softmax: the authors' LDA class calls ``numpy.linalg.eigh`` on the non-symmetric
product ``S_W^-1 S_B``; ``eigh`` reads one triangle only, as if the matrix were symmetric, and returns orthonormal
eigenvectors ``V`` (``V V^T = I``), so the coefficients ``M V V^T`` reduce to the class means ``M``: the
covariance drops out. That computation produced the published ETran numbers users compare with, so it is the
default. Measured on 24 real EfficientNet-Lite taps (N = 3 000): the shrunk variant's LDA term differs from the
code's by up to 104% relative (the identity variant agrees to 2e-15), and the ranking with it drops from weighted
tau 0.80 to 0.25.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from nctransfer.exceptions import InputValueError
from nctransfer.transferability._common import (
    blas_limited,
    check_positive_float,
    check_positive_int,
    iter_pool,
    minmax,
    require_pool,
    softmax,
    workspace,
)
from nctransfer.transferability.base import register
from nctransfer.transferability.sfda import shrunk_lda_posterior
from nctransfer.utils.threads import limit_blas_threads

_TAILS = ("bottom", "top")
_LDA_COV = ("shrunk", "identity")
TERMS = ("energy", "lda")


def _row_logsumexp(X: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """``log sum_j exp(x_ij)`` per row, stable, in row chunks (``scipy.special.logsumexp`` is ~10x slower).

    A chunk whose row maxima all lie in ``[-600, 600]`` is exponentiated without the shift by the row maximum
    (no overflow, and the largest term of each row stays a normal number, so the value is as accurate); other
    chunks are shifted."""
    out = np.empty(X.shape[0])
    for start in range(0, X.shape[0], chunk):
        B = X[start:start + chunk]
        m = B.max(axis=1)
        if len(m) and -600.0 <= m.min() and m.max() <= 600.0:
            E = np.exp(B)
            out[start:start + chunk] = np.log(E.sum(axis=1))
            continue
        E = B - m[:, None]
        np.exp(E, out=E)
        out[start:start + chunk] = np.log(E.sum(axis=1)) + m
    return out


@blas_limited
def etran_terms(X: Any, y: Any = None, *, percent: float = 0.5, tail: str = "bottom",
                lda_covariance: str = "identity", a: float = 5.0, n_power_iter: int = 3,
                min_shrinkage: float = 1e-10) -> dict[str, float]:
    """The two raw ETran terms of one model (docs/methods.md#etran).

    Args:
        X: features ``[N, d]``; y: labels ``[N]``.
        percent: percentage of samples in the energy tail (0.5, i.e. 0.5%; at least one sample).
        tail: ``"bottom"`` (default, the code's ``'bot'``: lowest logsumexp) or ``"top"``.
        lda_covariance: ``"identity"`` (default: the effective computation of the authors' released code, an
            isotropic nearest-class-mean softmax, see the module docstring) or ``"shrunk"`` (the paper's variant:
            SFDA-style shrunk pooled within-class covariance).
        a, n_power_iter, min_shrinkage: the SFDA adaptive shrinkage (5, 3, 1e-10).

    Returns:
        ``{"energy": ..., "lda": ...}`` (higher = better for both).
    """
    fname = "etran"
    percent = check_positive_float(percent, "percent", fname)
    if percent > 100:
        raise InputValueError(f"etran: percent must be in (0, 100]; got {percent!r}.")
    if tail not in _TAILS:
        raise InputValueError(f"etran: tail must be one of {_TAILS}; got {tail!r}.")
    if lda_covariance not in _LDA_COV:
        raise InputValueError(f"etran: lda_covariance must be one of {_LDA_COV}; got {lda_covariance!r}.")
    n_power_iter = check_positive_int(n_power_iter, "n_power_iter", fname)
    ws = workspace(X, y, fname)
    E = _row_logsumexp(ws.X)
    k = max(1, int(np.floor(percent * ws.n / 100.0 + 1e-9)))
    Es = np.sort(E)
    energy = float(Es[:k].mean() if tail == "bottom" else Es[-k:].mean())
    if lda_covariance == "shrunk":
        P, _ = shrunk_lda_posterior(ws, a=a, n_power_iter=n_power_iter, floor=min_shrinkage)
    else:
        # identity covariance: the coefficients are the centred class means themselves (lda_logits with S = I,
        # without factorising a d x d identity, which took 60% of the time at d = 1280). (x - mu_G) . M_k =
        # x . M_k - mu_G . M_k: the centred features are never formed; class sums by a dense one-hot product.
        # Both products are K columns wide (memory-bound): one BLAS thread (a second one only spin-waits; with two
        # on the busy 2-core machine this term took 6-8x its one-thread time).
        X = ws.X
        onehot = (ws.codes[None, :] == np.arange(ws.K)[:, None]).astype(np.float64)
        with limit_blas_threads(1):
            M = (onehot @ X) / ws.counts[:, None] - ws.mean
            P = softmax(X @ M.T + (np.log(ws.priors) - 0.5 * np.einsum("kd,kd->k", M, M) - M @ ws.mean))
    lda = float(P[np.arange(ws.n), ws.codes].mean())
    return {"energy": energy, "lda": lda}


def etran_combine(terms: Mapping[str, Mapping[str, float]], weights: Sequence[float] = (0.15, 0.85)) -> "Any":
    """Pool combination ``w_e minmax(energy) + w_l minmax(lda)`` (weights ``(0.15, 0.85)``).

    Returns:
        ``pandas.DataFrame`` indexed by model with ``energy, lda`` (raw), ``energy_norm, lda_norm`` and ``etran``.
    """
    names = list(terms)
    require_pool(names, "etran", "ETran")
    if len(weights) != 2:
        raise InputValueError(f"etran: weights must be (energy, lda); got {weights!r}.")
    df = pd.DataFrame({t: [float(terms[m][t]) for m in names] for t in TERMS}, index=names)
    df["energy_norm"] = minmax(df["energy"].to_numpy())
    df["lda_norm"] = minmax(df["lda"].to_numpy())
    df["etran"] = float(weights[0]) * df["energy_norm"] + float(weights[1]) * df["lda_norm"]
    return df


@blas_limited
def etran(pool: Any, y: Any = None, *, weights: Sequence[float] = (0.15, 0.85), **options: Any) -> "Any":
    """ETran of every model of a pool (docs/methods.md#etran); ``df["etran"]`` is the score.

    Raises:
        InputValueError: fewer than two models (ETran is pool-relative).
    """
    items = iter_pool(pool, y, "etran")
    require_pool([n for n, _, _ in items], "etran", "ETran")
    return etran_combine({name: etran_terms(X, yy, **options) for name, X, yy in items}, weights)


etran_terms = register("etran", title="ETran", spec="docs/methods.md#etran",
         reference="Gholami, Akbari, Wang & Zhang, ICCV 2023",
         pool_relative=True, combine=etran_combine, passes=2, cost="O(N d^2 + d^3/3)")(etran_terms)

__all__ = ["etran", "etran_terms", "etran_combine"]
