"""Neural-collapse metrics (docs/methods.md#collapse-metrics) as pure functions.

Every function takes ``X_or_stats`` (features ``[N, d]`` with labels ``y [N]``, a
:class:`~nctransfer.stats.FeatureStats`, or a :class:`~nctransfer.metrics.PreparedFeatures` shared between
several calls) and returns a Python float (or a small dataclass / array where stated). Classes are the sorted
unique labels; every ``[K, ...]`` output and every classifier ``W [K, d]`` input is in that order.

Metrics that need per-sample data (:func:`nc4`, :func:`ncc_accuracy`, :func:`numerical_rank`) accept only
``(X, y)`` and say so when given statistics. Where a metric is undefined for the data (a class too small,
coincident class means, a rank-deficient ``Sigma_B``) it emits :class:`~nctransfer.exceptions.UndefinedMetricWarning`
and returns NaN. Perfectly collapsed features (every sample equal to its class mean) give NC1 = VCI = CDNV = 0
exactly: variances below the float64 rounding floor of their computation are treated as 0.

Notation (docs/methods.md#notation): class means ``mu_k``, global mean ``mu_G``, mean of class means ``mu_bar``,
``Sigma_W`` (within), ``Sigma_B`` (between, class-balanced), ``Sigma_Bw`` (between, sample-weighted),
``Sigma_T = Sigma_W + Sigma_Bw`` (total).
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from typing import Any, Hashable

import numpy as np

from nctransfer.exceptions import ConvergenceWarning, InputValueError, ShapeError, UndefinedMetricWarning
from nctransfer.metrics._prepare import CHUNK_ROWS, EPS, PreparedFeatures, prepare, warn_numerical
from nctransfer.stats.feature_stats import FeatureStats
from nctransfer.utils.validation import check_features, check_labels, to_numpy

NAN = float("nan")


def _undefined(message: str) -> float:
    warnings.warn(message, UndefinedMetricWarning, stacklevel=3)
    return NAN


def _check_rtol(rtol: float | None, default: float) -> float:
    if rtol is None:
        return default
    rtol = float(rtol)
    if not (0.0 <= rtol < 1.0):
        raise InputValueError(f"rtol must be in [0, 1); got {rtol!r}.")
    return rtol


# ============================================================================ NC1 / fuzziness
def _within_between_trace(p: PreparedFeatures, rank: int | None, rtol: float | None, metric: str) -> float:
    """``tr(Sigma_W Sigma_B^+)`` with the pseudo-inverse kept to the top ``r`` eigenpairs of ``Sigma_B``."""
    r_max = min(p.d, p.K - 1)
    if rank is None:
        r = r_max
    else:
        if int(rank) != rank or not (1 <= int(rank) <= r_max):
            raise InputValueError(f"{metric}: rank must be an integer in [1, min(d, K-1)] = [1, {r_max}]; "
                                  f"got {rank!r}.")
        r = int(rank)
    S, V = p.between_svd()
    tol = _check_rtol(rtol, max(p.K, p.d) * EPS)
    coincide = S[0] ** 2 * p.K <= p.coincidence_tol()  # all centred means within rounding of 0
    if len(S) < r or coincide or S[r - 1] <= tol * S[0]:
        found = 0 if coincide else int(np.sum(S > tol * S[0]))
        return _undefined(
            f"{metric} is undefined: Sigma_B has numerical rank {found} < r = {r} (class means span fewer than "
            f"r = min(d, K-1) directions, e.g. coincident or collinear means); returning NaN. "
            f"Pass rank=<= {found} to use fewer eigenpairs." if found else
            f"{metric} is undefined: all class means coincide (Sigma_B = 0); returning NaN.")
    if p.within_trace() == 0.0:
        return 0.0  # Sigma_W = 0 (perfect collapse)

    def compute() -> float:
        quad = p.within_quadratic_diag(V[:, :r])
        return max(float(np.sum(quad / S[:r] ** 2)), 0.0)
    return p._cached(f"within_between_trace_{r}", compute)


def nc1(X_or_stats: Any, y: Any = None, *, rank: int | None = None, rtol: float | None = None) -> float:
    """NC1 within-class variability collapse: ``(1/K) tr(Sigma_W Sigma_B^+)`` (docs/methods.md#nc1).

    ``Sigma_B^+`` keeps only the top ``r = min(d, K-1)`` eigenpairs of ``Sigma_B`` (Xu & Liu, ICML 2023, section 4.3:
    a tolerance threshold alone is unstable). The eigenpairs come from the SVD of the ``K x d`` centred class
    means, and ``Sigma_W`` is only projected on those ``r`` directions, so no ``d x d`` decomposition is needed
    (cost ``O(K d min(K, d) + d^2 r)`` from statistics, ``O(N d r)`` from samples).

    Args:
        X_or_stats: features ``[N, d]`` (with ``y``), a ``FeatureStats`` or ``PreparedFeatures``.
        y: labels ``[N]`` when ``X_or_stats`` is an array.
        rank: number ``r`` of eigenpairs of ``Sigma_B`` kept (default ``min(d, K-1)``).
        rtol: relative tolerance on the singular values of the centred means below which ``Sigma_B`` is
            considered rank-deficient (default ``max(K, d) * eps``).

    Returns:
        NC1 in ``[0, inf)``; lower = more collapsed; 0 when every sample equals its class mean. NaN with an
        :class:`UndefinedMetricWarning` when ``Sigma_B`` has fewer than ``r`` non-zero eigenvalues.

    References:
        Papyan, Han & Donoho, "Prevalence of neural collapse...", PNAS 2020; Li et al., TMLR 2024, eq. 4.

    Examples:
        >>> import numpy as np
        >>> X = np.array([[0., 0.], [2., 0.], [4., 0.], [6., 0.]]); y = [0, 0, 1, 1]
        >>> nc1(X, y)  # Sigma_W = diag(1, 0), Sigma_B = diag(4, 0): (1/K) * 1/4
        0.125
    """
    p = prepare(X_or_stats, y)
    value = _within_between_trace(p, rank, rtol, "nc1")
    return value / p.K


def fuzziness(X_or_stats: Any, y: Any = None, *, rank: int | None = None, rtol: float | None = None) -> float:
    """Fuzziness ``tr(Sigma_W Sigma_B^+)`` ``= K * NC1`` (Xu & Liu, ICML 2023, section 3.2; docs/methods.md#other-metrics).

    Same arguments, pseudo-inverse and undefined cases as :func:`nc1`. Range ``[0, inf)``, lower = more collapsed.
    """
    p = prepare(X_or_stats, y)
    return _within_between_trace(p, rank, rtol, "fuzziness")


# ============================================================================ NC2
@dataclass(frozen=True)
class NC2Result:
    """NC2 convergence to a simplex ETF (docs/methods.md#nc2); each term is 0 for an exact simplex ETF.

    Attributes:
        equinorm: ``std_k ||m_k|| / mean_k ||m_k||``.
        equiangularity: ``std_{k != l} cos(m_k, m_l)``.
        max_angle: ``mean_{k != l} |cos(m_k, m_l) + 1/(K-1)|``.
        etf_distance: ``|| G/||G||_F - (I - 11^T/K)/||I - 11^T/K||_F ||_F``, ``G`` the Gram of normalised ``m_k``.
    """

    equinorm: float
    equiangularity: float
    max_angle: float
    etf_distance: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def _nc2_parts(p: PreparedFeatures) -> NC2Result:
    def compute() -> NC2Result:
        M = p.centred_means()
        norms = np.sqrt(np.einsum("kd,kd->k", M, M))
        zero = norms ** 2 <= p.coincidence_tol()
        if zero.all():
            msg = "all class means coincide (centred means are 0)"
            return NC2Result(*(_undefined(f"nc2 is undefined: {msg}; returning NaN.") for _ in range(4)))
        equinorm = float(np.std(norms) / np.mean(norms))
        if zero.any():
            bad = [p.classes[i] for i in np.flatnonzero(zero)][:5]
            msg = (f"nc2 angles are undefined: the mean of class(es) {bad} equals the mean of class means, "
                   "so their direction is undefined; returning NaN")
            nan = _undefined(msg + ".")
            return NC2Result(equinorm, nan, nan, nan)
        Mn = M / norms[:, None]
        G = Mn @ Mn.T
        off = ~np.eye(p.K, dtype=bool)
        cos = G[off]
        K = p.K
        equi = float(np.std(cos))
        max_angle = float(np.mean(np.abs(cos + 1.0 / (K - 1))))
        E = np.eye(K) - np.ones((K, K)) / K
        etf = float(np.linalg.norm(G / np.linalg.norm(G) - E / np.linalg.norm(E)))
        return NC2Result(equinorm, equi, max_angle, etf)
    return p._cached("nc2", compute)


def nc2(X_or_stats: Any, y: Any = None) -> NC2Result:
    """NC2: convergence of the centred class means ``m_k = mu_k - mu_bar`` to a simplex ETF (docs/methods.md#nc2).

    Needs only class means (from statistics or samples). Every term is in ``[0, inf)`` (``etf_distance`` in
    ``[0, 2]``), lower = closer to a simplex equiangular tight frame. When a centred mean is 0 its direction is
    undefined: the angle terms are NaN with an :class:`UndefinedMetricWarning`.

    Returns:
        :class:`NC2Result` (``.as_dict()`` for a dict).

    References:
        Papyan, Han & Donoho, PNAS 2020 (figures 2-4).

    Examples:
        >>> import numpy as np
        >>> means = np.array([[1., 0.], [-0.5, 3 ** 0.5 / 2], [-0.5, -(3 ** 0.5) / 2]])  # simplex ETF, K=3
        >>> r = nc2(np.repeat(means, 2, axis=0), [0, 0, 1, 1, 2, 2])
        >>> round(r.etf_distance, 12), round(r.equinorm, 12)
        (0.0, 0.0)
    """
    return _nc2_parts(prepare(X_or_stats, y))


def nc2_equinorm(X_or_stats: Any, y: Any = None) -> float:
    """NC2 equinorm ``std_k ||m_k|| / mean_k ||m_k||`` (docs/methods.md#nc2); see :func:`nc2`."""
    return nc2(X_or_stats, y).equinorm


def nc2_equiangularity(X_or_stats: Any, y: Any = None) -> float:
    """NC2 equiangularity ``std_{k != l} cos(m_k, m_l)`` (docs/methods.md#nc2); see :func:`nc2`."""
    return nc2(X_or_stats, y).equiangularity


def nc2_max_angle(X_or_stats: Any, y: Any = None) -> float:
    """NC2 max-angle ``mean_{k != l} |cos(m_k, m_l) + 1/(K-1)|`` (docs/methods.md#nc2); see :func:`nc2`."""
    return nc2(X_or_stats, y).max_angle


def etf_distance(X_or_stats: Any, y: Any = None) -> float:
    """NC2 distance of the normalised means' Gram matrix to the simplex ETF's (docs/methods.md#nc2); see :func:`nc2`."""
    return nc2(X_or_stats, y).etf_distance


# ============================================================================ NC3
def nc3(X_or_stats: Any, y: Any = None, *, W: Any) -> float:
    """NC3 self-duality ``|| W/||W||_F - M/||M||_F ||_F^2`` (docs/methods.md#nc3).

    Args:
        X_or_stats, y: features and labels, or statistics.
        W: classifier weights ``[K, d]`` (numpy or torch), rows in sorted class order (``stats.classes``).

    Returns:
        NC3 in ``[0, 4]``; 0 when the classifier rows are proportional to the centred class means ``m_k``.

    Raises:
        ShapeError: ``W`` not ``[K, d]`` (a transposed ``[d, K]`` gets a hint).
        InputValueError: ``W`` is all zeros or not finite.
    """
    p = prepare(X_or_stats, y)
    Wn = np.asarray(to_numpy(W), dtype=np.float64)
    if Wn.shape != (p.K, p.d):
        hint = " Hint: pass W.T (rows are classes)." if Wn.shape == (p.d, p.K) else ""
        raise ShapeError(f"nc3: W must have shape [K, d] = [{p.K}, {p.d}] (one row per class, sorted class order); "
                         f"got {Wn.shape}.{hint}")
    if not np.all(np.isfinite(Wn)):
        raise InputValueError("nc3: W contains NaN or Inf.")
    wn = np.linalg.norm(Wn)
    if wn == 0.0:
        raise InputValueError("nc3: W is all zeros; its direction is undefined.")
    M = p.centred_means()
    mn = np.linalg.norm(M)
    if mn ** 2 <= p.K * p.coincidence_tol():
        return _undefined("nc3 is undefined: all class means coincide (M = 0); returning NaN.")
    return float(np.sum((Wn / wn - M / mn) ** 2))


# ============================================================================ NC4 / NCC
def _means_source(means: Any, p_fallback: PreparedFeatures | None) -> tuple[np.ndarray, list[Hashable]]:
    if means is None:
        assert p_fallback is not None
        return p_fallback.class_means(), list(p_fallback.classes)
    if isinstance(means, (FeatureStats, PreparedFeatures)):
        q = prepare(means)
        return q.class_means(), list(q.classes)
    raise InputValueError(f"means must be a FeatureStats or PreparedFeatures (class means with their labels); "
                          f"got {type(means).__name__}.")


def _ncc_codes(X: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """Index of the nearest class mean for every row (ties: first class), in row chunks."""
    ref = mu.mean(0)
    m = mu - ref
    msq = np.einsum("kd,kd->k", m, m)
    out = np.empty(len(X), dtype=np.int64)
    for start in range(0, len(X), CHUNK_ROWS):
        xc = np.asarray(X[start:start + CHUNK_ROWS], dtype=np.float64) - ref
        out[start:start + CHUNK_ROWS] = np.argmin(msq[None, :] - 2.0 * (xc @ m.T), axis=1)
    return out


def ncc_predict(X: Any, means: Any) -> np.ndarray:
    """Nearest-class-mean predictions ``argmin_k ||x - mu_k||`` (labels) for features ``X [M, d]``.

    Args:
        X: features ``[M, d]``.
        means: a ``FeatureStats`` / ``PreparedFeatures`` holding the class means (e.g. of the training set).

    Returns:
        Labels ``[M]`` (numpy object/int array in the label type of ``means``).
    """
    mu, classes = _means_source(means, None)
    Xn = to_numpy(check_features(X, "X"))
    if Xn.shape[1] != mu.shape[1]:
        raise ShapeError(f"X has {Xn.shape[1]} features but the class means have d={mu.shape[1]}.")
    return np.asarray(classes, dtype=object)[_ncc_codes(Xn, mu)] if classes else np.zeros(0)


def _samples(X: Any, y: Any, metric: str) -> PreparedFeatures:
    if isinstance(X, FeatureStats):
        PreparedFeatures().require_samples(metric)  # raises the explanatory error
    p = prepare(X, y)
    p.require_samples(metric)
    return p


def _label_codes(labels: Any, classes: list[Hashable], n: int, name: str) -> np.ndarray:
    lab = check_labels(labels, n, name)
    index = {c: i for i, c in enumerate(classes)}
    codes = np.empty(n, dtype=np.int64)
    unknown = []
    for i, v in enumerate(lab.tolist()):
        code = index.get(v)
        if code is None:
            unknown.append(v)
            code = -1
        codes[i] = code
    if unknown:
        shown = sorted({repr(u) for u in unknown})[:5]
        raise InputValueError(f"{name} has labels not among the classes of the class means: {', '.join(shown)} "
                              f"(known classes: {classes[:10]}{'...' if len(classes) > 10 else ''}).")
    return codes


def nc4(X: Any, y: Any = None, *, predictions: Any = None, W: Any = None, b: Any = None,
        means: Any = None) -> float:
    """NC4: fraction of samples whose nearest-class-mean prediction differs from the classifier's (docs/methods.md#nc4).

    ``NCC(x) = argmin_k ||x - mu_k||`` with ``mu_k`` the class means of ``(X, y)`` (or of ``means``, e.g. the
    training statistics). Compared with, in order of precedence: ``predictions`` (labels ``[N]``), the linear
    classifier ``argmax_k (W x + b)_k`` (``W [K, d]`` in sorted class order, ``b [K]``), or, with neither, the
    true labels ``y`` (then NC4 is the NCC error ``1 - ncc_accuracy``).

    Needs per-sample features: raises :class:`InputValueError` when given a ``FeatureStats``.

    Returns:
        NC4 in ``[0, 1]``; lower = classifier behaves more like the nearest-class-mean rule.
    """
    p = _samples(X, y, "nc4")
    mu, classes = _means_source(means, p)
    if mu.shape[1] != p.d:
        raise ShapeError(f"nc4: X has {p.d} features but the class means have d={mu.shape[1]}.")
    ncc = _ncc_codes(p.X, mu)
    if predictions is not None:
        ref = _label_codes(predictions, classes, p.n, "predictions")
    elif W is not None:
        Wn = np.asarray(to_numpy(W), dtype=np.float64)
        if Wn.shape != (len(classes), p.d):
            hint = " Hint: pass W.T (rows are classes)." if Wn.shape == (p.d, len(classes)) else ""
            raise ShapeError(f"nc4: W must have shape [K, d] = [{len(classes)}, {p.d}]; got {Wn.shape}.{hint}")
        bn = np.zeros(len(classes)) if b is None else np.asarray(to_numpy(b), dtype=np.float64).reshape(-1)
        if bn.shape != (len(classes),):
            raise ShapeError(f"nc4: b must have shape [K] = [{len(classes)}]; got {bn.shape}.")
        ref = np.empty(p.n, dtype=np.int64)
        for start in range(0, p.n, CHUNK_ROWS):
            xc = np.asarray(p.X[start:start + CHUNK_ROWS], dtype=np.float64)
            ref[start:start + CHUNK_ROWS] = np.argmax(xc @ Wn.T + bn, axis=1)
    elif means is None:
        ref = p.codes
    else:
        ref = _label_codes(np.asarray(p.classes, dtype=object)[p.codes], classes, p.n, "y")
    return float(np.mean(ncc != ref))


def ncc_accuracy(X: Any, y: Any = None, *, means: Any = None) -> float:
    """Nearest-class-mean accuracy: fraction of samples with ``argmin_k ||x - mu_k|| == y`` (docs/methods.md#nc4).

    Args:
        X, y: features ``[N, d]`` and labels ``[N]`` (per-sample data required).
        means: optional ``FeatureStats`` of another split (e.g. training) whose class means define the rule;
            default: the class means of ``(X, y)``.

    Returns:
        Accuracy in ``[0, 1]``; higher = more collapsed (NCC agrees with the labels).
    """
    p = _samples(X, y, "ncc_accuracy")
    mu, classes = _means_source(means, p)
    if mu.shape[1] != p.d:
        raise ShapeError(f"ncc_accuracy: X has {p.d} features but the class means have d={mu.shape[1]}.")
    truth = p.codes if means is None else _label_codes(np.asarray(p.classes, dtype=object)[p.codes], classes, p.n, "y")
    return float(np.mean(_ncc_codes(p.X, mu) == truth))


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
        from scipy.linalg import eigh

        e, U = p._cached("gram_eigh", lambda: eigh(p.centred_gram()))
        # u^T P u with P the class-indicator projector: sum_k (sum_{i in k} u_i)^2 / n_k
        import scipy.sparse as sp

        ind = sp.csr_matrix((np.ones(p.n), (p.codes, np.arange(p.n))), shape=(p.K, p.n))
        proj = np.asarray(ind @ U)
        weight = np.einsum("kj,kj->j", proj, proj / p.counts[:, None])
        if ridge is None:
            keep = e > rtol * e[-1]
            return float(weight[keep].sum())
        pos = np.maximum(e, 0.0)
        return float(np.sum(weight * pos / (pos + ridge)))
    from scipy.linalg import LinAlgError, cho_factor, eigh, lapack, solve_triangular

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
