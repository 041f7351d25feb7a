"""LogME: the maximum log marginal evidence of a Bayesian linear model on the features (docs/methods.md#logme).

You, Liu, Wang & Long, "LogME: Practical Assessment of Pre-trained Models for Transfer Learning", ICML 2021;
fixed-point solver from You et al., "Ranking and Tuning Pre-trained Models", JMLR 2022.

Model ``t = X w + noise`` with ``w ~ N(0, alpha^-1 I_d)`` and noise ``N(0, beta^-1)``. With
``A = alpha I + beta X^T X`` and ``m = beta A^-1 X^T t`` the log evidence is::

    L = d/2 log alpha + N/2 log beta - N/2 log 2pi - beta/2 ||X m - t||^2 - alpha/2 ||m||^2 - 1/2 log det A

maximised over ``alpha, beta`` by the fixed point ``gamma = sum_i beta s_i / (alpha + beta s_i)``,
``alpha = gamma / ||m||^2``, ``beta = (N - gamma) / ||X m - t||^2`` from ``alpha = beta = 1``. Classification uses K
one-vs-rest 0/1 targets; the score is the mean over targets of ``L / N``.

**Exact evidence for N < d.** ``log det A`` has ``d`` eigenvalues: ``alpha + beta s_i`` for the ``r`` non-zero
eigenvalues ``s_i`` of ``X^T X`` and ``alpha`` for the ``d - r`` null directions. The reference implementation
(``LogME.py``) sums only the ``r <= min(N, d)`` non-zero ones, dropping ``(d - r)/2 log alpha`` -- inflated scores
for few-shot data or wide features. Here the exact evidence is computed; it coincides with the reference when
``X`` has full column rank (``N > d``). A relative eigenvalue cut-off ``rcond`` decides which ``s_i`` are zero.

**One decomposition for all targets.** Classification LogME depends on the data only through ``N``, ``X^T X``,
the class sums ``X^T t_k`` and counts ``||t_k||^2 = n_k``, so it is computed from one eigendecomposition of
``X^T X`` (``d x d``; or of ``X X^T`` when ``N < d``) shared by every target, and it is a function of the
streaming statistics of a :class:`~nctransfer.stats.FeatureStats` (section 0). Note: LogME uses the raw,
uncentred features (no bias term), as the reference code does.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nctransfer.exceptions import ConvergenceWarning, InputValueError, NCTransferError, ShapeError
from nctransfer.stats.feature_stats import FeatureStats
from nctransfer.stats.labelled import LabelledFeatures
from nctransfer.transferability._common import (
    blas_limited,
    Workspace,
    check_positive_float,
    check_positive_int,
    eigh,
    workspace,
)
from nctransfer.transferability._linalg import varying_columns
from nctransfer.transferability.base import register
from nctransfer.utils.validation import check_features, is_torch, to_numpy

_LOG_2PI = float(np.log(2.0 * np.pi))


@dataclass
class LogMEResult:
    """Detailed LogME output.

    Attributes:
        score: mean over targets of the per-sample log evidence ``L / N`` (the LogME score).
        evidence: per-target ``L / N`` ``[m]`` (classification: one per class, sorted class order).
        alpha, beta: the fixed-point precisions per target ``[m]``.
        iterations: fixed-point updates per target ``[m]``.
        converged: whether the relative change of ``alpha/beta`` fell below ``tol`` within ``max_iter``.
        rank: number of non-zero eigenvalues ``r`` of ``X^T X`` kept.
        n, d: samples and feature width.
    """

    score: float
    evidence: np.ndarray
    alpha: np.ndarray
    beta: np.ndarray
    iterations: np.ndarray
    converged: np.ndarray
    rank: int
    n: int
    d: int
    classes: list = field(default_factory=list)


def _spectral_inputs_from_stats(stats: FeatureStats) -> tuple[int, int, np.ndarray, np.ndarray, np.ndarray, list]:
    """``(N, d, X^T X, X^T T [d, K], ||t_k||^2)`` of raw features from streaming statistics.

    The statistics hold ``G = sum (x - a)(x - a)^T`` about a shift ``a`` and shifted class sums ``s_k``; the raw
    second moment is ``X^T X = G + a s^T + s a^T + N a a^T`` with ``s = sum_k s_k``, and ``X^T t_k = s_k + n_k a``.
    """
    stats._require(2)
    o = stats._order()
    a = stats.shift_
    s = stats.sums_.sum(0)
    n = int(stats.n_)
    G = stats.gram_ + np.outer(a, s) + np.outer(s, a) + n * np.outer(a, a)
    G = (G + G.T) * 0.5
    counts = stats.counts_[o].astype(np.float64)
    B = (stats.sums_[o] + counts[:, None] * a).T
    return n, G.shape[0], G, B, counts, stats.classes


def _fixed_point(s: np.ndarray, x2: np.ndarray, res_x2: np.ndarray, n: int, d: int, max_iter: int, tol: float,
                 eps: float) -> tuple[np.ndarray, ...]:
    """Vectorised fixed point over targets.

    Args:
        s: non-zero eigenvalues of ``X^T X`` ``[r]``; x2: squared projections ``(u_i^T t)^2`` ``[r, m]``;
        res_x2: ``||t||^2 - sum_i x2_i`` ``[m]`` (energy of ``t`` outside the column space of ``X``).

    Returns:
        ``(evidence/N, alpha, beta, iterations, converged)``, each ``[m]``.
    """
    m = x2.shape[1]
    r = s.shape[0]
    alpha = np.ones(m)
    beta = np.ones(m)
    iters = np.zeros(m, dtype=np.int64)
    conv = np.zeros(m, dtype=bool)
    S = s[:, None]
    for _ in range(max_iter):
        act = ~conv
        if not act.any():
            break
        a, b = alpha[act], beta[act]
        t = a / b
        den = t[None, :] + S
        gamma = (S / den).sum(0)
        m2 = (S * x2[:, act] / den ** 2).sum(0)
        res2 = (x2[:, act] * (t[None, :] / den) ** 2).sum(0) + res_x2[act]
        a_new = gamma / (m2 + eps)
        b_new = (n - gamma) / (res2 + eps)
        t_new = a_new / b_new
        alpha[act], beta[act] = a_new, b_new
        iters[act] += 1
        conv[act] = np.abs(t_new - t) / t <= tol
    # exact evidence at the final (alpha, beta): m and the residual recomputed at t = alpha / beta
    t = alpha / beta
    den = t[None, :] + S
    m2 = (S * x2 / den ** 2).sum(0)
    res2 = (x2 * (t[None, :] / den) ** 2).sum(0) + res_x2
    logdet = np.log(alpha[None, :] + beta[None, :] * S).sum(0) + (d - r) * np.log(alpha)
    L = (d / 2.0 * np.log(alpha) + n / 2.0 * np.log(beta) - n / 2.0 * _LOG_2PI
         - beta / 2.0 * res2 - alpha / 2.0 * m2 - 0.5 * logdet)
    return L / n, alpha, beta, iters, conv


def _torch_spectral(X: Any, T: np.ndarray, rcond: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """GPU path: ``X^T X`` (or ``X X^T``), its eigendecomposition and the projections, all on the tensor's device.

    Returns ``(s, x2, tnorm2)`` on the host (``r`` eigenvalues and ``[r, m]`` projections).
    """
    import torch  # deferred: only CUDA tensors reach this path; the scores import without torch

    Xt = X.detach().to(torch.float64)
    Tt = torch.as_tensor(T, dtype=torch.float64, device=Xt.device)
    n, d = Xt.shape
    if n < d:
        w, U = torch.linalg.eigh(Xt @ Xt.T)
        keep = w > rcond * w[-1].clamp_min(0)
        x2 = (U[:, keep].T @ Tt) ** 2
        s = w[keep]
    else:
        G = Xt.T @ Xt
        w, V = torch.linalg.eigh((G + G.T) / 2)
        keep = w > rcond * w[-1].clamp_min(0)
        C = V[:, keep].T @ (Xt.T @ Tt)
        s = w[keep]
        x2 = C ** 2 / s[:, None]
    return to_numpy(s), to_numpy(x2), to_numpy((Tt ** 2).sum(0))


def _targets(y: Any, n: int, regression: bool) -> tuple[np.ndarray | None, Any, list]:
    """``(T, None, names)`` for a target matrix / regression target, ``(None, None, [])`` for class labels.

    A 2-D ``y`` is a target matrix ``[N, m]`` unless it is a single column of non-float labels; a 1-D ``y`` is
    class labels unless ``regression=True``.
    """
    y_np = np.asarray(to_numpy(y))
    is_matrix = y_np.ndim == 2 and (y_np.shape[1] > 1 or regression or y_np.dtype.kind == "f")
    if is_matrix or (regression and y_np.ndim == 1):
        T = y_np.reshape(len(y_np), -1)
        if T.shape[0] != n:
            raise ShapeError(f"logme: X has {n} rows but the targets y have {T.shape[0]}.")
        if T.dtype.kind not in "fiub":
            raise InputValueError(f"logme: targets y must be numeric; got dtype {T.dtype}.")
        T = T.astype(np.float64)
        if not np.all(np.isfinite(T)):
            raise InputValueError("logme: the targets y contain NaN or Inf.")
        return T, None, [f"target_{j}" for j in range(T.shape[1])]
    return None, None, []


@blas_limited
def logme(X_or_stats: Any, y: Any = None, *, regression: bool = False, max_iter: int = 11, tol: float = 1e-3,
          rcond: float = 1e-10, eps: float = 1e-5, return_details: bool = False) -> float | LogMEResult:
    """LogME score (docs/methods.md#logme): mean over targets of the maximised log evidence per sample.

    Args:
        X_or_stats: features ``[N, d]`` (numpy or torch; CUDA tensors are decomposed on the GPU), or a
            :class:`~nctransfer.stats.FeatureStats` (classification only; ``y=None``).
        y: class labels ``[N]`` (K one-vs-rest 0/1 targets), or a target matrix ``[N, m]`` of floats
            (regression, or multi-label 0/1 columns), or with ``regression=True`` one real target ``[N]``.
        regression: treat a 1-D ``y`` as one real-valued target.
        max_iter: cap on fixed-point updates per target (11 in the reference code).
        tol: stop when the relative change of ``alpha / beta`` is ``<= tol`` (1e-3 in the reference code).
        rcond: eigenvalues of ``X^T X`` below ``rcond * max`` count as zero (null directions).
        eps: guard added to ``||m||^2`` and ``||X m - t||^2`` in the updates (1e-5 in the reference code).
        return_details: return a :class:`LogMEResult` instead of the float.

    Returns:
        LogME (higher = better; a log-likelihood per sample, typically in ``[-3, 3]``).

    Raises:
        ShapeError / InputValueError: bad shapes, NaN/Inf, fewer than two classes, all-zero features.

    Warns:
        ConvergenceWarning: some targets did not reach ``tol`` within ``max_iter`` updates (the reference code
            stops silently).

    Cost: ``O(N d min(N, d) + min(N, d)^3 + N d m)``; one decomposition shared by the ``m`` targets.

    Examples:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> y = np.repeat([0, 1], 50); X = rng.normal(size=(100, 5)) + 3 * y[:, None]
        >>> round(logme(X, y), 4) > round(logme(rng.normal(size=(100, 5)), y), 4)
        True
    """
    fname = "logme"
    max_iter = check_positive_int(max_iter, "max_iter", fname)
    tol = check_positive_float(tol, "tol", fname)
    rcond = check_positive_float(rcond, "rcond", fname)
    eps = check_positive_float(eps, "eps", fname, allow_zero=True)
    classes: list = []
    if isinstance(X_or_stats, FeatureStats):
        if y is not None:
            raise InputValueError("logme: pass either a FeatureStats object or (X, y), not both.")
        if regression:
            raise InputValueError("logme: FeatureStats hold class sums only; regression targets need arrays.")
        n, d, G, B, tnorm2, classes = _spectral_inputs_from_stats(X_or_stats)
        s, x2, res_x2 = _project_feature_domain(G, B, tnorm2, rcond)
    else:
        if isinstance(X_or_stats, LabelledFeatures):
            if y is not None:
                raise InputValueError("logme: labels are inside the prepared workspace; got y as well.")
            ws = workspace(X_or_stats, None, fname)
            T = None
        else:
            if y is None:
                raise InputValueError("logme: labels y are required when X is an array; got y=None.")
            try:
                Xv = check_features(X_or_stats, "X")
            except NCTransferError as exc:
                raise type(exc)(f"logme: {exc}") from None
            T, _, classes = _targets(y, int(Xv.shape[0]), regression)
            ws = None
            if T is None:
                ws = workspace(Xv, y, fname)
            elif not np.any(T):
                raise InputValueError("logme: every target is zero; nothing to explain.")
        if ws is not None:
            classes = ws.classes
            n, d = ws.n, ws.d
            if ws.on_gpu:
                onehot = np.zeros((n, ws.K))
                onehot[np.arange(n), ws.codes] = 1.0
                s, x2, tnorm2 = _torch_spectral(ws._torch, onehot, rcond)
                res_x2 = np.maximum(tnorm2 - x2.sum(0), 0.0)
            elif n < d:
                w, U = ws.cached("eigh_raw_gram", lambda: eigh(_sym(ws.X @ ws.X.T)))
                keep = w > rcond * max(w[-1], 0.0)
                P = ws.class_sum(U[:, keep]).T  # [r, K] = U^T t_k
                s, x2 = w[keep], P ** 2
                res_x2 = np.maximum(ws.counts - x2.sum(0), 0.0)
            else:
                # features that are zero on every sample (units that never activate) are zero rows and columns of
                # X^T X and of the class sums: dropping them leaves the non-zero eigenvalues and the projections
                # exactly as they are (the evidence keeps d: the dropped directions are null directions)
                live = ws.cached("nonzero_columns", lambda: varying_columns(ws.X))

                def raw_gram() -> np.ndarray:
                    # another score's centred product (rank) is reused, not the collapse metrics' scatter: LogME on
                    # a workspace then equals LogME on the arrays exactly, whatever the metrics computed before
                    if "scatter_T" in ws._cache:
                        G = _sym(ws.scatter_T + ws.n * np.outer(ws.mean, ws.mean))
                        return G if live is None else G[np.ix_(live, live)]
                    Xl = ws.X if live is None else np.take(ws.X, live, axis=1)
                    return _sym(Xl.T @ Xl)  # standalone: one product, no centred copy

                key = "" if live is None else "_nonzero"
                G = ws.cached("raw_gram" + key, raw_gram)
                B = ws.class_sum(ws.X).T  # raw class sums X^T t_k [d, K]
                s, x2, res_x2 = _project_feature_domain(G, B if live is None else B[live], ws.counts, rcond, ws,
                                                        key="eigh_raw_gram" + key)
        else:
            # explicit target matrix (regression / multi-label)
            Xt = Xv
            n, d = int(Xt.shape[0]), int(Xt.shape[1])
            if is_torch(Xt) and Xt.device.type != "cpu":
                s, x2, tnorm2 = _torch_spectral(Xt, T, rcond)
                res_x2 = np.maximum(tnorm2 - x2.sum(0), 0.0)
            else:
                Xn = np.ascontiguousarray(to_numpy(Xt), dtype=np.float64)
                tnorm2 = (T ** 2).sum(0)
                if n < d:
                    w, U = eigh(_sym(Xn @ Xn.T))
                    keep = w > rcond * max(w[-1], 0.0)
                    s, x2 = w[keep], (U[:, keep].T @ T) ** 2
                    res_x2 = np.maximum(tnorm2 - x2.sum(0), 0.0)
                else:
                    s, x2, res_x2 = _project_feature_domain(_sym(Xn.T @ Xn), Xn.T @ T, tnorm2, rcond)
    if len(s) == 0:
        raise InputValueError("logme: X has no non-zero singular value (all features are zero).")
    ev, alpha, beta, iters, conv = _fixed_point(s, x2, res_x2, n, d, max_iter, tol, eps)
    if not conv.all():
        warnings.warn(f"logme: {int((~conv).sum())} of {len(conv)} targets did not converge to tol={tol:g} within "
                      f"max_iter={max_iter} fixed-point updates (the reference code stops silently at 11).",
                      ConvergenceWarning, stacklevel=3)
    value = float(np.mean(ev))
    if return_details:
        return LogMEResult(value, ev, alpha, beta, iters, conv, int(len(s)), n, d, list(classes))
    return value


def _sym(A: np.ndarray) -> np.ndarray:
    return (A + A.T) * 0.5


def _project_feature_domain(G: np.ndarray, B: np.ndarray, tnorm2: np.ndarray, rcond: float,
                            ws: Workspace | None = None, key: str = "eigh_raw_gram"
                            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Eigenvalues ``s`` ``[r]`` of ``G = X^T X`` above the cut-off, ``x2 = (V^T X^T t)^2 / s`` ``[r, m]`` and
    ``res_x2 = ||t||^2 - sum x2`` from ``B = X^T T`` ``[d, m]`` (the decomposition cached in ``ws`` under ``key``)."""
    if ws is not None:
        w, V = ws.cached(key, lambda: eigh(G))
    else:
        w, V = eigh(G)
    keep = w > rcond * max(w[-1], 0.0)
    s = w[keep]
    C = V[:, keep].T @ B
    x2 = C ** 2 / s[:, None]
    res_x2 = np.maximum(np.asarray(tnorm2, dtype=np.float64) - x2.sum(0), 0.0)
    return s, x2, res_x2


logme = register("logme", title="LogME", spec="docs/methods.md#logme",
         reference="You, Liu, Wang & Long, ICML 2021; fixed-point solver: You et al., JMLR 2022",
         accepts_stats=True, passes=1, inputs="X, y (or FeatureStats; or target matrix)",
         cost="O(N d min(N,d) + min(N,d)^3)")(logme)

__all__ = ["logme", "LogMEResult"]
