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

This module holds NC1 (and fuzziness), NC2, NC3 and NC4 / nearest-class-centre accuracy; CDNV, numerical rank, VCI,
squared distance, cosine similarities and class separation live in :mod:`nctransfer.metrics.geometry` and are
importable from here as well.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Hashable

import numpy as np

from nctransfer.exceptions import InputValueError, ShapeError
from nctransfer.metrics._prepare import CHUNK_ROWS, EPS, PreparedFeatures, prepare
from nctransfer.metrics._shared import _check_rtol, _samples, _undefined
from nctransfer.metrics.geometry import (  # noqa: F401  re-exported: nctransfer.metrics.collapse keeps every name
    CosineSimilarityResult,
    cdnv,
    cdnv_matrix,
    class_separation,
    cosine_similarity,
    cosine_within_distance,
    numerical_rank,
    squared_distance,
    vci,
)
from nctransfer.stats.feature_stats import FeatureStats
from nctransfer.stats.labelled import LabelledFeatures
from nctransfer.utils.validation import check_features, check_labels, to_numpy

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
    if isinstance(means, (FeatureStats, PreparedFeatures, LabelledFeatures)):
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
