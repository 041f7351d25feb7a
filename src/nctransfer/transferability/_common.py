"""Shared internals of the transferability scores: the per-candidate workspace (:class:`Workspace`: validated
features with cached scatter matrices, eigendecompositions and PCA), input checks and pool handling. The linear
algebra (thread limits, eigendecompositions, Cholesky, shrinkage LDA, min-max) is in
:mod:`nctransfer.transferability._linalg` and importable from here.

Everything here is private (leading underscore in the public modules' imports). Numerics are float64.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Callable

import numpy as np

from nctransfer.exceptions import InputValueError, NCTransferError, NumericalWarning
from nctransfer.stats.feature_stats import FeatureStats
from nctransfer.stats.labelled import LabelledFeatures, prefix_errors
from nctransfer.transferability._linalg import (  # noqa: F401  re-exported: the scores import them from here
    EPS,
    blas_limited,
    block_krylov_top,
    cholesky,
    dense_top_eigh,
    eigh,
    generalized_eigvecs,
    lapack_threads,
    lda_coef,
    lda_logits,
    minmax,
    nuclear_norm,
    power_sigma_max,
    set_blas_threads,
    set_lapack_threads,
    shrink,
    softmax,
    solve_lower,
    svdvals,
    top_eigenpairs,
    varying_columns,
    warn,
    well_conditioned_cholesky,
)
from nctransfer.utils.memory import WIDE_FEATURES_ADVICE, check_memory
from nctransfer.utils.validation import check_probs, to_numpy


def _gram_operator(Xc: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """``V -> Xc^T (Xc V)`` in row blocks of about 2 MB, so that each block of ``Xc`` is read from memory once and
    reused from cache for the second product (the two products with a narrow ``V`` are memory-bound: measured
    25% faster than two passes over a 1 500 x 1 280 ``Xc``)."""
    rows = max(64, 2 ** 18 // max(Xc.shape[1], 1))

    def op(V: np.ndarray) -> np.ndarray:
        if Xc.shape[0] <= rows:
            return Xc.T @ (Xc @ V)
        out = np.zeros((Xc.shape[1], V.shape[1]))
        for start in range(0, Xc.shape[0], rows):
            C = Xc[start:start + rows]
            out += C.T @ (C @ V)
        return out
    return op


class Workspace(LabelledFeatures):
    """Validated features and labels of one candidate with lazily cached intermediate quantities.

    A :class:`~nctransfer.stats.labelled.LabelledFeatures` (validated arrays, class means, centred features) with
    the scatter matrices, eigendecompositions and PCA of the scores. Built by every score from ``(X, y)``;
    :func:`~nctransfer.transferability.rank` builds one per candidate and passes it to every method so that the
    ``O(N d^2)`` products and decompositions are computed once.

    Attributes:
        n, d, K: samples, feature width, classes. ``classes``: sorted labels; ``codes``: ``[N]`` in ``0..K-1``.
        counts: ``n_k`` (float64 ``[K]``).
    """

    def __init__(self, X: Any, y: Any, fname: str = "score", *, labels_required: bool = True) -> None:
        super().__init__(X, y, fname, labels_required=labels_required)

    # -------------------------------------------------------------------------------- total scatter
    @property
    def scatter_T(self) -> np.ndarray:
        """``sum_i (x_i - mu_G)(x_i - mu_G)^T = N Sigma_T`` ``[d, d]`` (GPU GEMM for CUDA tensors)."""
        def compute() -> np.ndarray:
            check_memory(2 * self.d * self.d * 8, f"{self.fname}: the d x d scatter matrix (d={self.d})",
                         advice=WIDE_FEATURES_ADVICE)
            if self.on_gpu:
                import torch  # deferred: only CUDA tensors reach this branch; the core install has no torch

                Xc = self._torch.double() - torch.as_tensor(self.mean, device=self._torch.device)
                S = to_numpy(Xc.T @ Xc)
                return (S + S.T) * 0.5
            return self.scatter  # the workspace's one scatter, shared with the collapse metrics
        return self.cached("scatter_T", compute)

    @property
    def scatter_formed(self) -> bool:
        """True when the ``d x d`` scatter is already in memory (formed by a score, or by the collapse metrics on
        this workspace), so reusing it is cheaper than another pass over the samples."""
        return "scatter_T" in self._cache or (not self.on_gpu and "scatter" in self._cache)

    @property
    def scatter_Bw(self) -> np.ndarray:
        """``sum_k n_k (mu_k - mu_G)(mu_k - mu_G)^T = N Sigma_Bw`` ``[d, d]``."""
        def compute() -> np.ndarray:
            M = self.centred_class_means
            return (M.T * self.counts) @ M
        return self.cached("scatter_Bw", compute)

    @property
    def scatter_W(self) -> np.ndarray:
        """``N Sigma_W = scatter_T - scatter_Bw`` ``[d, d]``."""
        def compute() -> np.ndarray:
            S = self.scatter_T - self.scatter_Bw
            return (S + S.T) * 0.5
        return self.cached("scatter_W", compute)

    # ------------------------------------------------- exact reductions to the varying columns
    # Features constant on the target set centre to exact zero columns (``_linalg.varying_columns``): the scatter
    # is then block diagonal with an exact zero block, so its nonzero eigenpairs, pseudo-inverse and quadratic
    # forms with the class means come from the ``m x m`` scatter of the ``m`` varying columns (``N m^2`` and ``m^3``
    # instead of ``N d^2`` and ``d^3``). Real networks have many: 606, 290 and 1 195 of the 1 280 penultimate units
    # of EfficientNet-Lite0/1/2 on 3 000 Fashion-MNIST images at 32 px never activate.
    def varying(self) -> np.ndarray | None:
        """Sorted indices of the varying columns of the centred features, or ``None`` when every column varies (and
        for features on the GPU, whose scatter is formed there)."""
        if self.on_gpu:
            return None
        return self.cached("varying_columns", lambda: varying_columns(self.Xc))

    def varying_scatter(self) -> tuple[np.ndarray | None, np.ndarray]:
        """``(live, S)``: the varying columns and their scatter ``Xc[:, live]^T Xc[:, live]`` ``[m, m]`` (the whole
        ``scatter_T`` with ``live = None`` when every column varies). Taken from the cached ``d x d`` scatter when
        another score already formed it."""
        live = self.varying()
        if live is None:
            return None, self.scatter_T

        def compute() -> np.ndarray:
            if self.scatter_formed:
                return self.scatter_T[np.ix_(live, live)]
            Xl = np.take(self.Xc, live, axis=1)
            with lapack_threads(len(live)):
                S = Xl.T @ Xl
            return (S + S.T) * 0.5
        return live, self.cached("scatter_T_varying", compute)

    def seed_top_eigh(self, k: int) -> None:
        """Fill the top-eigenpair cache with the top ``k`` eigenpairs of the total scatter computed on the varying
        columns, when that is cheaper than :meth:`top_eigh_T`'s own route (block Krylov on ``Xc^T (Xc V)``).

        - Some columns constant (``m < d`` varying): the eigenpairs of the ``m x m`` scatter, the eigenvectors padded
          with exact zeros on the constant columns -- formed by one product when ``N >= 2 m``, else block Krylov on
          ``Xc[:, live]``.
        - Every column varying and ``N >= 2 d``: the ``d x d`` scatter by one product (a matrix-matrix product at full
          speed; at ``N = 3 000, d = 1 280`` this plus the eigenpairs of the formed matrix took 0.2 s against 0.3 s for
          Krylov on the samples), then its top eigenpairs.

        Nothing happens on the GPU, in the Gram domain (``N < d``), when the workspace would use its full
        eigendecomposition anyway (``k > d / 3`` or already computed), when enough eigenpairs are cached, or when
        ``k`` exceeds the number of varying columns (the remaining eigenvalues are 0 and their eigenvectors arbitrary:
        the workspace's route chooses them as before).
        """
        d = self.d
        if self.on_gpu or self.gram_domain or k < 1 or k > d // 3 or "eigh_T" in self._cache:
            return
        best = self._cache.get("top_eigh_T")
        if best is not None and best[0].shape[0] >= k:
            return
        live = self.varying()
        m = d if live is None else len(live)
        if k > m or (live is None and (self.n < 2 * d or self.scatter_formed)):
            return  # the workspace's own route: Krylov on the samples, or on the scatter another score formed
        top = None
        if live is not None and self.n < 2 * m and not self.scatter_formed and m >= 400 and 6 * k <= m:
            with lapack_threads(m):
                top = block_krylov_top(_gram_operator(np.take(self.Xc, live, axis=1)), m, k)
        if top is None:
            _, S = self.varying_scatter()
            with lapack_threads(m):
                top = dense_top_eigh(S, k)
        w, V = top
        if live is not None:
            full = np.zeros((d, V.shape[1]))
            full[live] = V
            V = full
        self._cache["top_eigh_T"] = (w, V)

    def eigh_T(self) -> tuple[np.ndarray, np.ndarray]:
        """Full ascending eigendecomposition of ``scatter_T`` (or of ``gram_c`` when ``N < d``)."""
        return self.cached("eigh_T", lambda: eigh(self.gram_c if self.gram_domain else self.scatter_T))

    def top_eigh_T(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` eigenpairs (descending) of ``scatter_T`` / ``gram_c``."""
        m = self.n if self.gram_domain else self.d
        k = min(int(k), m)
        if "eigh_T" in self._cache or k > m // 3:
            w, V = self.eigh_T()
            return w[::-1][:k].copy(), V[:, ::-1][:, :k].copy()
        best = self._cache.get("top_eigh_T")
        if best is not None and best[0].shape[0] >= k:
            return best[0][:k].copy(), best[1][:, :k].copy()
        top = None
        if m >= 400 and 6 * k <= m and not self.on_gpu:
            # block Krylov (rounding-level residuals): on the cached matrix if another score formed it, else on
            # Xc^T (Xc V) without forming the d x d scatter (2-3x less work than the product plus ARPACK at
            # N = 1 500, d = 1 280, k = 64)
            if self.gram_domain or self.scatter_formed:
                A = self.gram_c if self.gram_domain else self.scatter_T
                op: Callable[[np.ndarray], np.ndarray] = A.__matmul__
            else:
                op = _gram_operator(self.Xc)
            with lapack_threads(m):
                top = block_krylov_top(op, m, k)
        if top is not None:
            self._cache["top_eigh_T"] = top
            return top
        A = self.gram_c if self.gram_domain else self.scatter_T
        top = top_eigenpairs(A, k)
        if top is None:
            w, V = eigh(A, subset=(m - k, m - 1))
            top = (w[::-1].copy(), V[:, ::-1].copy())
        self._cache["top_eigh_T"] = top
        return top

    # ------------------------------------------------------------------------------------------- PCA
    def pca(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact PCA: scores ``[N, k]`` and explained variances ``[k]`` (``ddof = 1``, as scikit-learn).

        Components follow scikit-learn's sign convention (the largest-magnitude loading of each component is
        positive), so the scores do not depend on the sample order.
        """
        key = f"pca{k}"

        def compute() -> tuple[np.ndarray, np.ndarray]:
            w, V = self.top_eigh_T(k)
            w = np.maximum(w, 0.0)
            if self.gram_domain:
                # Xc Xc^T = U diag(w) U^T: components V = Xc^T U / sqrt(w), scores = U sqrt(w)
                keep = w > max(self.n, self.d) * EPS * (w[0] if len(w) else 0.0)
                comps = np.zeros((self.d, len(w)))
                comps[:, keep] = (self.Xc.T @ V[:, keep]) / np.sqrt(w[keep])
            else:
                comps = V
            idx = np.argmax(np.abs(comps), axis=0)
            signs = np.sign(comps[idx, np.arange(comps.shape[1])])
            signs[signs == 0] = 1.0
            comps = comps * signs
            scores = self.Xc @ comps
            return scores, w / max(self.n - 1, 1)
        return self.cached(key, compute)


def pca_dims(ws: Workspace, wanted: int, fname: str, arg: str = "n_components", rule: str = "spec") -> int:
    """Number of PCA components, with a :class:`NumericalWarning` whenever fewer than ``wanted`` are used.

    ``rule="spec"`` (NCTI, docs/methods.md#ncti): ``wanted`` if ``min(N, d) >= wanted``, else ``min(N, d) - 1``.
    ``rule="available"`` (GBC, PARC): ``min(wanted, d, N - 1)`` -- all dimensions when ``d`` is small (a PCA to
    ``d`` dimensions is a rotation), ``N - 1`` when the samples limit the rank. At least 1.
    """
    wanted = int(wanted)
    if wanted < 1:
        raise InputValueError(f"{fname}: {arg} must be a positive integer; got {wanted!r}.")
    lim = min(ws.n, ws.d)
    if rule == "spec":
        k = wanted if lim >= wanted else max(lim - 1, 1)
    else:
        k = max(min(wanted, ws.d, ws.n - 1), 1)
    if k < wanted:
        warn(f"{fname}: PCA to {arg}={wanted} dims needs min(N, d) >= {wanted} but N={ws.n}, d={ws.d}; "
             f"using {k} dims instead.", NumericalWarning, stacklevel=5)
    return k


def workspace(X: Any, y: Any, fname: str, **kwargs: Any) -> Workspace:
    """``X`` if it already is a :class:`Workspace` (``y`` must then be ``None``), a workspace view of a
    :class:`~nctransfer.stats.labelled.LabelledFeatures` (same arrays and cache), else a new one."""
    if isinstance(X, LabelledFeatures):
        if y is not None:
            raise InputValueError(f"{fname}: pass labels either inside the prepared workspace or as y, not both.")
        if isinstance(X, Workspace):
            return X
        ws = Workspace.__new__(Workspace)  # the same validated arrays and cache, with the scores' methods
        ws.__dict__ = X.__dict__
        return ws
    if isinstance(X, FeatureStats):
        raise InputValueError(f"{fname} needs per-sample features X [N, d] and labels y; a FeatureStats object "
                              "holds only sums. Scores computable from statistics: "
                              "logme, hscore, neg_nc1, neg_log_nc1, neg_vci, neg_cdnv.")
    return Workspace(X, y, fname, **kwargs)


# ----------------------------------------------------------------------------------------------- input checks
def check_probs_for(ws: Workspace, probs: Any, fname: str, name: str = "probs") -> np.ndarray:
    """Source-classifier probabilities ``[N, C_src]`` checked against the workspace (clear messages)."""
    if probs is None:
        raise InputValueError(
            f"{fname} needs the source classifier's probabilities: pass {name}=softmax(logits) of shape "
            f"[N, C_src] (N={ws.n}). Scores that need no source classifier: logme, hscore, sfda, ncti, gbc, ...")
    try:
        return check_probs(probs, ws.n, name)
    except NCTransferError as exc:
        raise prefix_errors(fname)(exc) from None


def check_positive_int(value: Any, name: str, fname: str, minimum: int = 1) -> int:
    try:
        ok = int(value) == value and int(value) >= minimum
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise InputValueError(f"{fname}: {name} must be an integer >= {minimum}; got {value!r}.")
    return int(value)


def check_positive_float(value: Any, name: str, fname: str, allow_zero: bool = False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InputValueError(f"{fname}: {name} must be a number; got {value!r}.") from None
    if not np.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise InputValueError(f"{fname}: {name} must be a finite number {bound}; got {value!r}.")
    return v


# ------------------------------------------------------------------------------------------------ pools
def iter_pool(pool: Any, y: Any, fname: str) -> list[tuple[str, Any, Any]]:
    """Normalise a pool of candidate models to ``[(name, X, y), ...]``.

    ``pool`` is a mapping ``name -> (X, y)`` / ``name -> X`` (with the shared ``y``) / ``name -> Workspace``, or a
    sequence of those (names ``model_0, model_1, ...``).
    """
    if isinstance(pool, Mapping):
        items = [(str(k), v) for k, v in pool.items()]
    elif isinstance(pool, Sequence) and not isinstance(pool, (str, bytes)):
        items = [(f"model_{i}", v) for i, v in enumerate(pool)]
    else:
        raise InputValueError(f"{fname}: pool must be a mapping name -> (X, y) (or a list of (X, y)); "
                              f"got {type(pool).__name__}.")
    out = []
    for name, v in items:
        if isinstance(v, LabelledFeatures):
            out.append((name, workspace(v, None, fname), None))
        elif isinstance(v, tuple) and len(v) >= 2:
            if y is not None:
                raise InputValueError(f"{fname}: candidate {name!r} carries its own labels; do not pass y too.")
            out.append((name, v[0], v[1]))
        else:
            if y is None:
                raise InputValueError(f"{fname}: candidate {name!r} is a bare feature array; pass (X, y) pairs or "
                                      "the shared labels y=...")
            out.append((name, v, y))
    return out


def require_pool(names: list[str], fname: str, title: str) -> None:
    if len(names) < 2:
        raise InputValueError(
            f"{fname}: {title} is pool-relative -- each term is min-max normalised across the candidate models of "
            f"one target dataset, so it needs at least 2 models; got {len(names)}. Add candidates, or use "
            f"{fname}_terms(X, y) for this model's raw terms.")
