"""Geometry of labelled features beyond NC1-NC4 (docs/methods.md#collapse-metrics): class-distance normalised
variance (CDNV), numerical rank, variability collapse index (VCI), squared distance, cosine similarities and
class separation. Conventions as in :mod:`nctransfer.metrics.collapse` (same inputs, NaN with an
:class:`~nctransfer.exceptions.UndefinedMetricWarning` where undefined).
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from typing import Any, Hashable

import numpy as np
from scipy.linalg import LinAlgError, cho_factor, eigh, lapack, solve_triangular

from nctransfer.exceptions import ConvergenceWarning, InputValueError
from nctransfer.metrics._prepare import EPS, PreparedFeatures, prepare, warn_numerical
from nctransfer.metrics._shared import NAN, _check_rtol, _samples, _undefined


# ============================================================================ CDNV
def _pairwise_sq_dist(M: np.ndarray) -> np.ndarray:
    K, d = M.shape
    if K * K * d <= 2e7:  # direct differences: no cancellation
        D = np.empty((K, K))
        for i in range(K):
            diff = M - M[i]
            D[i] = np.einsum("kd,kd->k", diff, diff)
        return D
    sq = np.einsum("kd,kd->k", M, M)
    return np.maximum(sq[:, None] + sq[None, :] - 2.0 * (M @ M.T), 0.0)


def _cdnv_parts(p: PreparedFeatures) -> tuple[float, np.ndarray]:
    def compute() -> tuple[float, np.ndarray]:
        var = p.class_variances()
        D = _pairwise_sq_dist(p.centred_means())
        num = var[:, None] + var[None, :]
        off = ~np.eye(p.K, dtype=bool)
        with np.errstate(divide="ignore", invalid="ignore"):
            V = num / (2.0 * D)
        V[~off] = NAN
        coincide = off & (D <= p.coincidence_tol())
        if coincide.any():
            i, j = np.argwhere(coincide)[0]
            V[coincide] = np.where(num[coincide] == 0.0, NAN, np.inf)
            return _undefined(f"cdnv is undefined: classes {p.classes[i]!r} and {p.classes[j]!r} have identical "
                              "means (distance 0); returning NaN."), V
        return float(V[off].mean()), V
    return p._cached("cdnv", compute)


def cdnv(X_or_stats: Any, y: Any = None, *, return_matrix: bool = False) -> float | tuple[float, np.ndarray]:
    """Class-distance normalised variance, mean over ordered pairs ``i != j`` (docs/methods.md#cdnv).

    ``Var_k = (1/n_k) sum_{i in k} ||x_i - mu_k||^2`` and ``V(i, j) = (Var_i + Var_j) / (2 ||mu_i - mu_j||^2)``.
    Needs only counts, class sums and per-class sums of squared norms: no ``d x d`` matrix, cost ``O(K^2 d)``.
    A singleton class has ``Var = 0`` (fine). Coincident class means make it undefined
    (:class:`UndefinedMetricWarning`, NaN).

    Args:
        return_matrix: also return the ``[K, K]`` matrix ``V`` (NaN diagonal, so ``np.nanmean(V)`` is CDNV).

    Returns:
        CDNV in ``[0, inf)`` (lower = more collapsed; 0 for perfect collapse), or ``(cdnv, matrix)``.

    References:
        Galanti, Gyorgy & Hutter, "On the role of neural collapse in transfer learning", ICLR 2022;
        Li et al., TMLR 2024, appendix A.

    Examples:
        >>> import numpy as np
        >>> X = np.array([[0., 0.], [0., 2.], [4., 0.], [4., 2.]])
        >>> cdnv(X, [0, 0, 1, 1])  # Var = 1 and 1, ||mu_0 - mu_1||^2 = 16
        0.0625
    """
    value, V = _cdnv_parts(prepare(X_or_stats, y))
    return (value, V.copy()) if return_matrix else value


def cdnv_matrix(X_or_stats: Any, y: Any = None) -> np.ndarray:
    """The ``[K, K]`` CDNV matrix ``V(i, j)`` of :func:`cdnv` (NaN on the diagonal; sorted class order)."""
    return cdnv(X_or_stats, y, return_matrix=True)[1]


# ============================================================================ numerical rank
def _spectral_norm_sq(H: np.ndarray, method: str, tol: float, max_iter: int, rng: np.random.Generator,
                      cls: Hashable) -> float:
    n, d = H.shape
    if method == "exact" or (method == "auto" and min(n, d) <= 512):
        small = H @ H.T if n <= d else H.T @ H
        return float(np.linalg.eigvalsh(small)[-1])
    v = H.sum(0) + 1e-3 * np.linalg.norm(H.sum(0)) * rng.standard_normal(d) / np.sqrt(d)
    if not np.any(v):
        v = rng.standard_normal(d)
    v /= np.linalg.norm(v)
    lam_old = 0.0
    for _ in range(max_iter):
        u = H @ v
        lam = float(u @ u)  # Rayleigh quotient of H^T H
        w = H.T @ u
        nw = np.linalg.norm(w)
        if nw == 0.0:
            return lam
        v = w / nw
        if abs(lam - lam_old) <= tol * lam:
            return lam
        lam_old = lam
    warnings.warn(f"numerical_rank: power iteration for class {cls!r} did not reach rtol={tol} in {max_iter} "
                  "iterations; the spectral norm may be underestimated (use method='exact').",
                  ConvergenceWarning, stacklevel=4)
    return lam_old


def numerical_rank(X: Any, y: Any = None, *, center: bool = False, method: str = "auto", tol: float = 1e-9,
                   max_iter: int = 1000, seed: int = 0, return_per_class: bool = False) -> float | Any:
    """Numerical (stable) rank ``(1/K) sum_k ||H_k||_F^2 / ||H_k||_2^2`` (docs/methods.md#numerical-rank).

    ``H_k`` are the raw (uncentred) features of class ``k``, or centred on the class mean with ``center=True``.
    Higher = less collapsed (each ratio is in ``[1, min(n_k, d)]``). Needs per-sample features.

    Args:
        X, y: features ``[N, d]`` and labels ``[N]``.
        center: subtract each class mean first.
        method: ``"exact"`` (largest eigenvalue of the smaller Gram matrix), ``"power"`` (power iteration on
            ``H_k^T H_k``), or ``"auto"``: exact when ``min(n_k, d) <= 512``, power otherwise.
        tol: power iteration stops when the Rayleigh quotient changes by less than ``tol`` (relative).
        max_iter: power-iteration cap (then :class:`ConvergenceWarning`).
        seed: seed of the power iteration's start perturbation.
        return_per_class: also return the per-class ratios ``[K]``.

    Returns:
        The mean ratio, or ``(mean, per_class)``. A class with fewer than 2 samples (its rank is trivially 1),
        or whose ``H_k`` is zero, is undefined: :class:`UndefinedMetricWarning` and NaN.

    References:
        Li et al., TMLR 2024, appendix A (numerical rank of the last-layer features); Rudelson & Vershynin 2007.
    """
    if method not in ("auto", "exact", "power"):
        raise InputValueError(f"numerical_rank: method must be 'auto', 'exact' or 'power'; got {method!r}.")
    p = _samples(X, y, "numerical_rank")
    rng = np.random.default_rng(seed)
    order = np.argsort(p.codes, kind="stable")
    bounds = np.searchsorted(p.codes[order], np.arange(p.K + 1))
    ratios = np.full(p.K, NAN)
    bad: list[Hashable] = []
    for k in range(p.K):
        idx = order[bounds[k]:bounds[k + 1]]
        H = np.asarray(p.X[idx], dtype=np.float64)
        if center:
            H = H - H.mean(0)
        fro = float(np.einsum("ij,ij->", H, H))
        if len(idx) < 2 or fro == 0.0:
            bad.append(p.classes[k])
            continue
        ratios[k] = fro / _spectral_norm_sq(H, method, tol, max_iter, rng, p.classes[k])
    if bad:
        value = _undefined(f"numerical_rank is undefined for class(es) {bad[:5]}: fewer than 2 samples or all-zero "
                           f"features{' after centring' if center else ''}; returning NaN.")
    else:
        value = float(ratios.mean())
    return (value, ratios) if return_per_class else value


# ============================================================================ VCI
def _vci_trace(p: PreparedFeatures, ridge: float | None, rtol: float) -> float:
    """``tr(Sigma_T^+ Sigma_Bw)`` (or ``tr((Sigma_T + ridge I)^{-1} Sigma_Bw)``), in the cheaper domain."""
    if p.domain == "gram":
        e, U = p._cached("gram_eigh", lambda: eigh(p.centred_gram()))
        # u^T P u with P the class-indicator projector: sum_k (sum_{i in k} u_i)^2 / n_k
        proj = p.labelled.class_sum(U)
        weight = np.einsum("kj,kj->j", proj, proj / p.counts[:, None])
        if ridge is None:
            keep = e > rtol * e[-1]
            return float(weight[keep].sum())
        pos = np.maximum(e, 0.0)
        return float(np.sum(weight * pos / (pos + ridge)))
    T = p.total_covariance()
    Dw = p.weighted_between_factor()
    if ridge is not None:
        try:
            L, _ = cho_factor(T + ridge * np.eye(p.d), lower=True, check_finite=False)
            return float(np.sum(solve_triangular(L, Dw.T, lower=True, check_finite=False) ** 2))
        except LinAlgError:
            e, Q = p._cached("sigma_T_eigh", lambda: eigh(T))
            P = Dw @ Q
            return float(np.sum(np.einsum("kj,kj->j", P, P) / (np.maximum(e, 0.0) + ridge)))

    def cholesky_if_well_conditioned() -> Any:
        # Sigma_T^+ = Sigma_T^{-1} whenever no eigenvalue falls below rtol * max: then a Cholesky solve gives the
        # same trace for ~1/9 of the cost of eigh. The 1-norm condition estimate bounds the 2-norm one; the
        # factor 100 covers the estimator's underestimation.
        anorm = lapack.dlange("1", T.T)  # 1-norm, no temporary
        L, info = lapack.dpotrf(T.T, lower=1, clean=1)  # T is symmetric: its transpose is a Fortran-order view
        if info != 0:
            return None
        rcond, info = lapack.dpocon(L, anorm, uplo="L")
        return L if info == 0 and rcond > 100.0 * rtol else None

    L = p._cached("sigma_T_chol", cholesky_if_well_conditioned)
    if L is not None:
        return float(np.sum(solve_triangular(L, Dw.T, lower=True, check_finite=False) ** 2))
    e, Q = p._cached("sigma_T_eigh", lambda: eigh(T))
    keep = e > rtol * e[-1]
    P = Dw @ Q[:, keep]
    return float(np.sum(np.einsum("kj,kj->j", P, P) / e[keep]))


def vci(X_or_stats: Any, y: Any = None, *, ridge: float | None = None, rtol: float | None = None,
        warn_ratio: float = 10.0) -> float:
    """Variability Collapse Index ``1 - tr(Sigma_T^+ Sigma_Bw) / rank(Sigma_Bw)`` (docs/methods.md#vci).

    ``rank(Sigma_Bw)`` is taken as ``r = min(d, K-1)`` (Xu & Liu, ICML 2023, section 5). VCI is invariant to any invertible
    linear map of the features (corollary 5.4). With ``ridge=lambda > 0`` the variant
    ``1 - tr((Sigma_T + lambda I)^{-1} Sigma_Bw) / r`` is returned (``lambda`` in the features' squared units,
    e.g. ``1e-3 * tr(Sigma_T) / d``).

    Computation: from statistics (or samples with ``N >= d``), a Cholesky solve when ``Sigma_T`` is well
    conditioned (no eigenvalue below ``rtol * max``, checked with a condition estimate), else an eigendecomposition
    with the eigenvalues ``<= rtol * max`` dropped. From samples with ``N < d``: the eigendecomposition of the
    ``N x N`` Gram matrix ``Xc Xc^T / N`` (same non-zero spectrum, no ``d x d`` matrix).

    Args:
        ridge: ``lambda`` of the ridge variant (``None``: pseudo-inverse).
        rtol: relative eigenvalue cut-off of ``Sigma_T^+`` (default ``max(N, d) * eps``).
        warn_ratio: emit :class:`NumericalWarning` when ``N - 1 < warn_ratio * max(d, K-1)`` (and no ridge). With
            features carrying no class information VCI is about ``1 - max(d, K-1)/(N-1)`` rather than 1 (Pillai's
            trace under the null), and exactly 0 when ``d >= N - 1`` (a linear probe interpolates).

    Returns:
        VCI in ``[0, 1]``: 0 = fully collapsed, 1 = no class information in the features (also when all class
        means coincide, ``Sigma_Bw = 0``).

    References:
        Xu & Liu, "Quantifying the variability collapse of neural networks", ICML 2023, def. 5.3.
    """
    p = prepare(X_or_stats, y)
    if ridge is not None:
        ridge = float(ridge)
        if not (ridge > 0.0 and np.isfinite(ridge)):
            raise InputValueError(f"vci: ridge must be a positive finite number (or None); got {ridge!r}.")
    tol = _check_rtol(rtol, max(p.n, p.d) * EPS)
    r = min(p.d, p.K - 1)
    big = max(p.d, p.K - 1)
    if ridge is None and p.n - 1 < warn_ratio * big:
        warn_numerical(
            f"vci: N = {p.n} samples is not comfortably larger than max(d, K-1) = {big} (N - 1 < {warn_ratio:g} x). "
            f"Features without class structure would give VCI ~ {max(0.0, 1 - big / max(p.n - 1, 1)):.3g} instead "
            "of 1, and VCI = 0 whenever d >= N - 1. Use more samples or the ridge variant vci(..., ridge=lambda)."
        )
    if p.within_trace() == 0.0:
        # Sigma_T = Sigma_Bw: tr(Sigma_Bw^+ Sigma_Bw) = rank(Sigma_Bw), or sum s^2/(s^2+lambda) with a ridge
        s = np.linalg.svd(p.weighted_between_factor(), compute_uv=False)
        if ridge is None:
            trace = float(np.sum(s > max(p.K, p.d) * EPS * s[0]))
        else:
            trace = float(np.sum(s ** 2 / (s ** 2 + ridge)))
    else:
        trace = _vci_trace(p, ridge, tol)
    return float(min(max(1.0 - trace / r, 0.0), 1.0))


# ============================================================================ simpler variability metrics
def squared_distance(X_or_stats: Any, y: Any = None) -> float:
    """Squared distance ``tr(Sigma_W) / tr(Sigma_Bw)`` (docs/methods.md#other-metrics).

    Needs counts, class sums and sums of squared norms only (cost ``O(K d)`` from statistics).
    Range ``[0, inf)``, lower = more collapsed; NaN (:class:`UndefinedMetricWarning`) if all class means coincide.

    References:
        Hui, Belkin & Nakkiran, "Limitations of neural collapse for understanding generalization in deep learning",
        2022; Xu & Liu, ICML 2023, eq. 4.

    Examples:
        >>> import numpy as np
        >>> X = np.array([[0., 0.], [0., 2.], [4., 0.], [4., 2.]])
        >>> squared_distance(X, [0, 0, 1, 1])  # tr(Sigma_W) = 1, tr(Sigma_Bw) = 4
        0.25
    """
    p = prepare(X_or_stats, y)
    tb = p.between_trace_weighted()
    if tb <= p.coincidence_tol():
        return _undefined("squared_distance is undefined: all class means coincide (tr(Sigma_Bw) = 0); "
                          "returning NaN.")
    return p.within_trace() / tb


@dataclass(frozen=True)
class CosineSimilarityResult:
    """Cosine-similarity variability metrics (docs/methods.md#other-metrics).

    Attributes:
        d_within: ``mean_k (1/n_k^2) sum_{i,j in k} (1 - s(x_i, x_j))`` in ``[0, 2]`` (lower = more collapsed).
        d_total: ``(1/N^2) sum_{i,j} (1 - s(x_i, x_j))`` in ``[0, 2]``.
        class_separation: ``1 - d_within / d_total`` in ``(-inf, 1]`` (higher = more collapsed).
    """

    d_within: float
    d_total: float
    class_separation: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def cosine_similarity(X_or_stats: Any, y: Any = None) -> CosineSimilarityResult:
    """Within-class cosine distance and class separation from sums of L2-normalised features (docs/methods.md#other-metrics).

    With ``u_k = sum_{i in k} x_i/||x_i||``: ``d_within = mean_k (1 - ||u_k||^2 / n_k^2)`` and
    ``d_total = 1 - ||sum_k u_k||^2 / N^2``. Zero feature vectors have cosine 0 with everything (themselves
    included). ``class_separation`` is NaN (:class:`UndefinedMetricWarning`) when ``d_total = 0`` (all features
    point the same way).

    References:
        Kornblith, Chen, Lee & Norouzi, "Why do better loss functions lead to less transferable features?",
        NeurIPS 2021; Xu & Liu, ICML 2023, section 3.2.
    """
    p = prepare(X_or_stats, y)

    def compute() -> CosineSimilarityResult:
        U = p.unit_sums()
        within = np.maximum(1.0 - np.einsum("kd,kd->k", U, U) / p.counts ** 2, 0.0)
        d_within = float(within.mean())
        tot = U.sum(0)
        d_total = max(float(1.0 - tot @ tot / float(p.n) ** 2), 0.0)
        if d_total <= 4.0 * EPS * p.n:
            sep = _undefined("cosine class separation is undefined: every feature vector points the same way "
                             "(d_total = 0); returning NaN.")
        else:
            sep = 1.0 - d_within / d_total
        return CosineSimilarityResult(d_within, d_total, float(sep))
    return p._cached("cosine", compute)


def cosine_within_distance(X_or_stats: Any, y: Any = None) -> float:
    """``d_within`` of :func:`cosine_similarity` (lower = more collapsed)."""
    return cosine_similarity(X_or_stats, y).d_within


def class_separation(X_or_stats: Any, y: Any = None) -> float:
    """``1 - d_within / d_total`` of :func:`cosine_similarity` (higher = more collapsed)."""
    return cosine_similarity(X_or_stats, y).class_separation
