"""Shared intermediate quantities of one labelled feature set, computed once and cached (docs/methods.md#notation).

Every collapse metric of :mod:`nctransfer.metrics.collapse` is a function of a few quantities: class counts,
class means, per-class variances, sums of L2-normalised features, the within-class covariance projected on a
few directions and, for VCI only, the total covariance. :func:`prepare` computes them from either source:

- a :class:`~nctransfer.stats.FeatureStats` (the streaming statistics; ``d x d`` second moment about a shift);
- per-sample arrays ``(X, y)``: an exact two-pass float64 computation in row chunks (memory
  ``O(chunk * d)`` beyond the input). When ``N < d`` the ``d x d`` covariance is never formed: VCI is computed
  in the ``N x N`` Gram domain (the non-zero eigenvalues of ``Sigma_T`` are those of ``Xc Xc^T / N``), and NC1
  projects the centred samples on the ``r <= K - 1`` leading directions of ``Sigma_B`` directly. The choice is
  automatic (``domain="auto"``); ``domain="features"`` forces the ``d x d`` path.

Per-sample arrays are held in a :class:`~nctransfer.stats.LabelledFeatures` workspace, which validates them and
computes (once, lazily, cached) the quantities shared with the transferability scores: labels and counts, the
global mean, the class means, the centred features and the ``N x N`` Gram matrix. A :class:`PreparedFeatures` is
a thin view over that workspace (or over a ``FeatureStats``) adding the metrics' own cached quantities; passing a
workspace (e.g. a transferability ``Workspace``) reuses its cache.

Passing a :class:`PreparedFeatures` to several metrics (or calling :func:`~nctransfer.metrics.compute_all`)
shares the work: SVD of the class means, the factorisation of ``Sigma_T``, the per-sample passes.
"""

from __future__ import annotations

import warnings
from typing import Any, Hashable

import numpy as np

from scipy.linalg import blas

from nctransfer.exceptions import InputValueError, NotFittedError, NumericalWarning
from nctransfer.stats.feature_stats import FeatureStats
from nctransfer.stats.labelled import CHUNK_ROWS, LabelledFeatures, class_sums
from nctransfer.utils.memory import WIDE_FEATURES_ADVICE, check_memory
from nctransfer.utils.validation import check_class_sizes, check_n_classes, check_target_type

EPS = float(np.finfo(np.float64).eps)
_DOMAINS = ("auto", "features", "gram")


def _rounding_floor(n: np.ndarray) -> np.ndarray:
    """Relative size below which a variance computed as a difference of sums is indistinguishable from 0.

    A class variance ``(1/n) sum ||x_i - a||^2 - ||mu - a||^2`` is exact only to about ``n * eps`` times the
    mean squared norm about the shift ``a`` (sequential summation of ``n`` terms); values below that floor are
    rounding noise, so they are set to exactly 0 (perfectly collapsed features give NC1 = VCI = CDNV = 0).
    """
    return 4.0 * EPS * np.maximum(np.asarray(n, dtype=np.float64), 16.0)


class PreparedFeatures:
    """Cached summary of labelled features used by every metric (build it with :func:`prepare`).

    A view over its source: a :class:`~nctransfer.stats.LabelledFeatures` workspace (per-sample features; class
    means, centring and the Gram matrix are the workspace's cached values) or a :class:`FeatureStats` (class
    means about the statistics' shift). It caches the metrics' own quantities (variances, unit sums, the SVD of
    the class means, ``Sigma_T``).

    Attributes:
        classes: class labels in sorted order (the row order of every ``[K, ...]`` array).
        counts: ``n_k`` as float64 ``[K]``; ``n``: ``N``; ``d``: feature width; ``K``: number of classes.
        stats: the :class:`FeatureStats` it was built from, or ``None`` (built from samples).
        labelled: the :class:`~nctransfer.stats.LabelledFeatures` it was built from, or ``None`` (from stats).
        X, codes: the samples (numpy, input dtype) and their class index in ``0..K-1`` (``None`` from stats).
        domain: ``"gram"`` (``N x N`` covariance computations) or ``"features"`` (``d x d``).
    """

    def __init__(self, source: LabelledFeatures | FeatureStats | None = None, domain: str = "features") -> None:
        self.labelled = source if isinstance(source, LabelledFeatures) else None
        self.stats: FeatureStats | None = source if isinstance(source, FeatureStats) else None
        self.domain = domain
        self._cache: dict[str, Any] = {}
        self.classes: list[Hashable] = []
        self.n = self.d = self.K = 0
        self.codes: np.ndarray | None = None
        if self.labelled is not None:
            lf = self.labelled
            self.classes, self.codes = lf.classes, lf.codes
            self.n, self.d, self.K = lf.n, lf.d, lf.K
        elif self.stats is not None:
            s = self.stats
            self.classes = s.classes
            self.n, self.d, self.K = s.n_samples, int(s.dim), s.n_classes

    @property
    def X(self) -> np.ndarray | None:
        return None if self.labelled is None else self.labelled.samples

    @property
    def counts(self) -> np.ndarray:
        if self.labelled is not None:
            return self.labelled.counts
        if self.stats is None:
            return np.zeros(0)
        return self._cached("counts", lambda: self.stats.class_counts().astype(np.float64))

    @property
    def _shift(self) -> np.ndarray:
        """The reference point ``a``: ``mu_G`` for samples, the statistics' shift otherwise."""
        if self.labelled is not None:
            return self.labelled.mean
        return np.zeros(0) if self.stats is None else self.stats.shift_

    @property
    def _msums(self) -> np.ndarray:
        """Shifted class means ``mu_k - a`` ``[K, d]``."""
        if self.labelled is not None:
            return self.labelled.centred_class_means
        if self.stats is None:
            return np.zeros((0, 0))
        return self._cached("msums", self.stats._shifted_means)

    # ------------------------------------------------------------------ basics
    @property
    def has_samples(self) -> bool:
        return self.labelled is not None

    def __repr__(self) -> str:
        src = "samples" if self.has_samples else "stats"
        return f"PreparedFeatures(n={self.n}, d={self.d}, K={self.K}, source={src!r}, domain={self.domain!r})"

    def _cached(self, key: str, fn: Any) -> Any:
        if key not in self._cache:
            self._cache[key] = fn()
        return self._cache[key]

    def require_samples(self, metric: str) -> None:
        """Raise a clear error for metrics that need per-sample features."""
        if not self.has_samples:
            raise InputValueError(
                f"{metric} needs per-sample features: pass (X, y) arrays, not a FeatureStats object "
                "(streaming statistics do not determine per-sample distances or per-class spectra)."
            )

    def shifted_means(self) -> np.ndarray:
        """``mu_k - a`` ``[K, d]`` about the internal reference point ``a`` (a copy)."""
        return self._msums.copy()

    def class_means(self) -> np.ndarray:
        """``mu_k`` ``[K, d]``."""
        return self._msums + self._shift

    def centred_means(self) -> np.ndarray:
        """``m_k = mu_k - mu_bar`` ``[K, d]`` (docs/methods.md#nc2)."""
        return self._cached("centred_means", lambda: self._msums - self._msums.mean(0))

    def global_offset(self) -> np.ndarray:
        """``mu_G - a`` ``[d]``."""
        return self._cached("global_offset", lambda: (self.counts @ self._msums) / self.n)

    # ---------------------------------------------------------- variances
    def class_variances(self) -> np.ndarray:
        """``Var_k = (1/n_k) sum_{i in k} ||x_i - mu_k||^2`` ``[K]``; rounding noise is set to exactly 0."""
        return self._cached("class_variances", self._class_variances)

    def _class_variances(self) -> np.ndarray:
        if self.stats is not None:
            s = self.stats
            o = s._order()
            msq = s.sqnorms_[o] / s.counts_[o]  # mean ||x - a||^2 per class
            var = msq - np.einsum("kd,kd->k", self._msums, self._msums)
        else:
            var_sum = np.zeros(self.K)
            msq_sum = np.zeros(self.K)
            for X64, c in self._chunks():
                w = X64 - self._msums[c]
                var_sum += np.bincount(c, weights=np.einsum("ij,ij->i", w, w), minlength=self.K)
                msq_sum += np.bincount(c, weights=np.einsum("ij,ij->i", X64, X64), minlength=self.K)
            var = var_sum / self.counts
            msq = msq_sum / self.counts
        self._cache["mean_squares"] = msq
        var = np.where(var <= _rounding_floor(self.counts) * msq, 0.0, var)
        return np.maximum(var, 0.0)

    def coincidence_tol(self) -> float:
        """Squared distance below which two class means (or a mean and ``mu_bar``) are indistinguishable from
        rounding: ``16 eps^2 max(N, 16) max_k mean_{i in k} ||x_i - a||^2`` (the summation error of the means)."""
        self.class_variances()
        return 16.0 * EPS ** 2 * max(self.n, 16) * float(np.max(self._cache["mean_squares"]))

    def within_trace(self) -> float:
        """``tr(Sigma_W) = (1/N) sum_k n_k Var_k`` (0 exactly for perfectly collapsed features)."""
        return float(self.counts @ self.class_variances()) / self.n

    def between_trace_weighted(self) -> float:
        """``tr(Sigma_Bw) = sum_k (n_k/N) ||mu_k - mu_G||^2``."""
        diff = self._msums - self.global_offset()
        return float(self.counts @ np.einsum("kd,kd->k", diff, diff)) / self.n

    def unit_sums(self) -> np.ndarray:
        """``u_k = sum_{i in k} x_i / ||x_i||`` ``[K, d]`` (zero vectors contribute 0)."""
        return self._cached("unit_sums", self._unit_sums)

    def _unit_sums(self) -> np.ndarray:
        if self.stats is not None:
            return self.stats.class_unit_sums()
        out = np.zeros((self.K, self.d))
        for X64, c in self._chunks(centred=False):
            sq = np.einsum("ij,ij->i", X64, X64)
            inv = np.zeros_like(sq)
            inv[sq > 0] = 1.0 / np.sqrt(sq[sq > 0])
            out += class_sums(X64 * inv[:, None], c, self.K)
        return out

    # ------------------------------------------------------------------ Sigma_B
    def between_svd(self) -> tuple[np.ndarray, np.ndarray]:
        """Singular values ``S`` (descending) and right singular vectors ``V [d, q]`` of ``M / sqrt(K)``,
        ``M`` the centred means: ``Sigma_B = V diag(S^2) V^T`` (eigenpairs from the small side, no ``d x d``)."""
        def compute() -> tuple[np.ndarray, np.ndarray]:
            M = self.centred_means() / np.sqrt(self.K)
            _, S, Vt = np.linalg.svd(M, full_matrices=False)
            return S, Vt.T
        return self._cached("between_svd", compute)

    def within_quadratic_diag(self, V: np.ndarray) -> np.ndarray:
        """``diag(V^T Sigma_W V)`` for ``V [d, r]``, without forming ``Sigma_W`` when samples are available."""
        if self.stats is not None:
            s = self.stats
            o = s._order()
            SV = s.sums_[o] @ V  # [K, r] shifted class sums
            GV = s.gram_ @ V  # [d, r]
            quad = np.einsum("dr,dr->r", V, GV) - np.einsum("kr,kr->r", SV, SV / s.counts_[o, None])
            return quad / self.n
        out = np.zeros(V.shape[1])
        for X64, c in self._chunks():
            P = (X64 - self._msums[c]) @ V
            out += np.einsum("ir,ir->r", P, P)
        return out / self.n

    # ------------------------------------------------------------------ Sigma_T
    def total_covariance(self) -> np.ndarray:
        """``Sigma_T [d, d]`` (from the statistics, or a chunked exact float64 pass over the samples)."""
        def compute() -> np.ndarray:
            check_memory(2 * self.d * self.d * 8, f"the d x d total covariance (d={self.d})",
                         advice=WIDE_FEATURES_ADVICE)
            if self.stats is not None:
                # Sigma_T = G/N - m m^T (G about the shift, m = mu_G - shift), built with one d x d allocation:
                # large temporaries cost page faults comparable to the arithmetic. Exactly symmetric.
                T = self.stats.gram_ * (1.0 / self.n)
                m = self.global_offset()
                out = blas.dger(-1.0, m, m, a=T.T, overwrite_a=1)  # T.T: Fortran-order view, updated in place
                return T if np.shares_memory(out, T) else np.ascontiguousarray(out.T)

            return self.labelled.scatter / self.n  # the workspace's one scatter, shared with the scores
        return self._cached("sigma_T", compute)

    def weighted_between_factor(self) -> np.ndarray:
        """``D_w [K, d]`` with rows ``sqrt(n_k/N) (mu_k - mu_G)``, so that ``Sigma_Bw = D_w^T D_w``."""
        return np.sqrt(self.counts / self.n)[:, None] * (self._msums - self.global_offset())

    def centred_gram(self) -> np.ndarray:
        """``Xc Xc^T / N`` ``[N, N]`` (Gram domain, used when ``N < d``; the workspace's ``gram_c``)."""
        return self._cached("gram", lambda: self.labelled.gram_c / self.n)

    # ------------------------------------------------------------------ chunks
    def _chunks(self, centred: bool = True) -> Any:
        """Yield ``(X_chunk - mu_G, codes)`` (or raw ``X_chunk``) in float64, ``CHUNK_ROWS`` rows at a time."""
        return self.labelled.chunks(centred, CHUNK_ROWS)


def prepare(X_or_stats: Any, y: Any = None, *, domain: str = "auto", name: str = "X") -> PreparedFeatures:
    """Summarise ``(X, y)`` or a :class:`FeatureStats` once for several metrics (see the module docstring).

    Args:
        X_or_stats: features ``[N, d]`` (numpy array, torch tensor or nested list; any float dtype), a
            :class:`FeatureStats`, a :class:`~nctransfer.stats.labelled.LabelledFeatures` workspace (e.g. a
            transferability ``Workspace``: its validated arrays and labels are used as they are, and the result is
            cached in it), or an existing :class:`PreparedFeatures` (returned unchanged).
        y: labels ``[N]`` of any hashable type when ``X_or_stats`` is an array; must be ``None`` otherwise.
        domain: ``"auto"`` (the ``N x N`` Gram domain when ``N < d`` and samples are given, else ``d x d``),
            ``"features"`` (always ``d x d``) or ``"gram"`` (always ``N x N``; needs samples).

    Returns:
        A :class:`PreparedFeatures`: from samples, a view over their
        :class:`~nctransfer.stats.labelled.LabelledFeatures` workspace (cached in it, one per resolved domain).

    Raises:
        InputValueError: fewer than two classes, ``y`` missing or given together with statistics, bad ``domain``.
        ShapeError: ``X`` not 2-D, empty, or of a different length than ``y``.
        NotFittedError: empty statistics.
    """
    if domain not in _DOMAINS:
        raise InputValueError(f"domain must be one of {_DOMAINS}; got {domain!r}.")
    if isinstance(X_or_stats, PreparedFeatures):
        if y is not None:
            raise InputValueError("pass either prepared features or (X, y), not both.")
        return X_or_stats
    if isinstance(X_or_stats, FeatureStats):
        if y is not None:
            raise InputValueError("pass either a FeatureStats object or (X, y), not both; got y as well.")
        s = X_or_stats
        if s.n_samples == 0:
            raise NotFittedError("FeatureStats has seen no data: call update(X, y) first.")
        check_n_classes(s.n_classes, name="the statistics' labels")
        check_target_type(np.asarray(s.classes, dtype=object), "the statistics' labels")
        check_class_sizes(s.counts_, "the statistics' labels")
        if domain == "gram":
            raise InputValueError("domain='gram' needs per-sample features (X, y), not FeatureStats.")
        return PreparedFeatures(s, "features")
    if isinstance(X_or_stats, LabelledFeatures):  # the shared workspace: validated once, its labels encoded once
        lf = X_or_stats
        if y is not None:
            raise InputValueError("pass labels either inside the labelled features or as y, not both.")
    else:
        if y is None:
            raise InputValueError(f"labels y are required when {name} is an array; got y=None "
                                  "(or pass a FeatureStats object).")
        lf = LabelledFeatures(X_or_stats, y, fname=None, name=name)
    mode = "gram" if domain == "gram" or (domain == "auto" and lf.gram_domain) else "features"
    return lf.cached(f"metrics.prepared.{mode}", lambda: PreparedFeatures(lf, mode))


def warn_numerical(message: str) -> None:
    warnings.warn(message, NumericalWarning, stacklevel=3)
