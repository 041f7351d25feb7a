"""TransRate: coding-rate gain of the features relative to their classes (docs/methods.md#transrate).

Huang, Huang, Rong, Yang & Wei, "Frustratingly Easy Transferability Estimation", ICML 2022.

Features are centred once (globally). With ``R(Z) = 1/2 logdet(I + Z^T Z / (n eps))`` for a matrix ``Z`` of
``n`` rows::

    TransRate = R(X) - (1/K) sum_k R(X_k)

where ``X_k`` are the (globally centred) rows of class ``k`` (not re-centred), ``eps = 1e-4``. Each log-determinant
is taken in the cheaper domain (``logdet(I_d + Z^T Z c) = logdet(I_n + Z Z^T c)``, Sylvester's identity) by a
Cholesky factorisation. Features constant on the target set are zero columns of every centred ``Z`` (an identity
block of ``I + c Z^T Z``, log-determinant 0): they are dropped, exactly.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np

from nctransfer.transferability._common import blas_limited, check_positive_float, cholesky, eigh, workspace
from nctransfer.transferability.base import register
from nctransfer.utils.threads import limit_blas_threads

_ONE_THREAD_SIDE = 512  # per-class Gram matrices up to this size are factorised with one BLAS thread


def _half_logdet_identity_plus(G: np.ndarray, c: float) -> float:
    """``1/2 logdet(I + c G)`` for a symmetric PSD ``G``."""
    A = c * G
    A.flat[:: A.shape[0] + 1] += 1.0
    L = cholesky(A)
    if L is not None:
        return float(np.sum(np.log(np.diag(L))))
    w = eigh((A + A.T) * 0.5, eigvals_only=True)
    return 0.5 * float(np.sum(np.log(np.maximum(w, np.finfo(np.float64).tiny))))


def _coding_rate(Z: np.ndarray, eps: float, gram: np.ndarray | None = None) -> float:
    n, d = Z.shape
    c = 1.0 / (n * eps)
    if gram is not None:
        return _half_logdet_identity_plus(gram.copy(), c)
    G = Z @ Z.T if n < d else Z.T @ Z
    return _half_logdet_identity_plus((G + G.T) * 0.5, c)


@blas_limited
def transrate(X: Any, y: Any = None, *, eps: float = 1e-4) -> float:
    """TransRate score (docs/methods.md#transrate).

    Args:
        X: features ``[N, d]``; y: labels ``[N]``.
        eps: distortion of the coding rate (1e-4 as in the paper's code).

    Returns:
        TransRate (higher = better; ``>= 0`` for the usual case, in nats).

    Cost: ``O(N d min(N, d) + sum_k n_k d min(n_k, d))`` plus Cholesky factorisations of the smaller Grams.
    """
    fname = "transrate"
    eps = check_positive_float(eps, "eps", fname)
    ws = workspace(X, y, fname)
    if ws.gram_domain:
        Xc = ws.Xc
        total = _coding_rate(Xc, eps, ws.gram_c)
    else:
        # a constant feature is a zero column of every Z: an identity block of I + c Z^T Z, logdet 0 (exact)
        live, S = ws.varying_scatter()
        Xc = ws.Xc if live is None else np.take(ws.Xc, live, axis=1)
        total = _coding_rate(Xc, eps, S)
    order = np.argsort(ws.codes, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(ws.codes, minlength=ws.K))])
    per_class = 0.0
    # the per-class Grams are at most min(n_k, d) wide: below _ONE_THREAD_SIDE one BLAS thread (extra threads only
    # spin-wait on such sizes: a 192 x 192 Cholesky took 0.2 ms with one thread, 14 ms with two on a busy 2-core
    # machine)
    side = min(int(ws.counts.max()), Xc.shape[1])
    with limit_blas_threads(1) if side <= _ONE_THREAD_SIDE else contextlib.nullcontext():
        for k in range(ws.K):
            rows = order[bounds[k]:bounds[k + 1]]
            per_class += _coding_rate(Xc[rows], eps)
    return float(total - per_class / ws.K)


transrate = register("transrate", title="TransRate", spec="docs/methods.md#transrate",
         reference="Huang, Huang, Rong, Yang & Wei, ICML 2022",
         passes=1, cost="O(N d min(N,d) + d^3/3)")(transrate)

__all__ = ["transrate"]
