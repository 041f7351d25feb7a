"""Linear algebra of the transferability scores (float64): BLAS thread limits, symmetric eigendecompositions
(full, subset, Lanczos and block Krylov top eigenpairs), singular values, Cholesky factors and solves, softmax,
min-max normalisation, and the shrinkage LDA of the SFDA/PED family.

Threads: scores use the BLAS library's own thread count unless :func:`set_blas_threads` or
``NCTRANSFER_BLAS_THREADS`` limits it. On an oversubscribed machine (several processes sharing 2 cores) one
thread was measured faster (threaded tridiagonalisation 5-15x slower; small products stalling for tens of
milliseconds): set ``NCTRANSFER_BLAS_THREADS=1`` there.
"""

from __future__ import annotations

import contextlib
import functools
import os
import warnings
from typing import Any, Callable, Iterator

import numpy as np
from scipy.linalg import cho_solve, cholesky as _chol, eigh as _eigh, lapack, qr, solve_triangular
from scipy.sparse.linalg import ArpackError, ArpackNoConvergence, eigsh

from nctransfer.exceptions import InputValueError, NumericalWarning
from nctransfer.utils.threads import limit_blas_threads

EPS = float(np.finfo(np.float64).eps)

def _default_threads() -> int | None:
    env = os.environ.get("NCTRANSFER_BLAS_THREADS", "none").strip().lower()
    if env in ("", "none", "default", "0"):
        return None
    try:
        return max(int(env), 1)
    except ValueError:
        return 1


_LAPACK_THREADS: int | None = _default_threads()


def set_blas_threads(n: int | None) -> None:
    """Number of BLAS/LAPACK threads used while a transferability score runs (``None``: the library default).

    Default: the BLAS library's own setting (or the environment variable ``NCTRANSFER_BLAS_THREADS``). On the
    loaded 2-core development machine OpenBLAS's threads were measured slower than one thread for every operation
    (``eigh`` of 2048 x 2048: 1.2-1.8 s with one thread, 10-20 s with two; a 10 000 x 2048 Gram product 0.7 s vs
    1.0 s; small products stall for tens of milliseconds). On an idle many-core machine raise it. The previous
    setting is restored when the score returns.
    """
    global _LAPACK_THREADS
    if n is not None and (int(n) != n or int(n) < 1):
        raise InputValueError(f"set_blas_threads: n must be a positive integer or None; got {n!r}.")
    _LAPACK_THREADS = None if n is None else int(n)


set_lapack_threads = set_blas_threads  # backwards-compatible name


@contextlib.contextmanager
def lapack_threads(min_size: int = 200) -> Iterator[None]:
    """Limit BLAS threads to the configured number (no-op for small matrices or when the limit is ``None``;
    :func:`nctransfer.utils.threads.limit_blas_threads`)."""
    if _LAPACK_THREADS is None or min_size < 200:
        yield
        return
    with limit_blas_threads(_LAPACK_THREADS):
        yield


def blas_limited(fn: Callable) -> Callable:
    """Decorator: run ``fn`` with the configured number of BLAS threads (see :func:`set_blas_threads`)."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with lapack_threads(10 ** 9):
            return fn(*args, **kwargs)
    return wrapper


def eigh(A: np.ndarray, subset: tuple[int, int] | None = None,
         eigvals_only: bool = False) -> Any:
    """Symmetric eigendecomposition in ascending order (scipy ``evd`` driver; ``evr`` for a subset)."""
    A = np.asarray(A, dtype=np.float64)
    with lapack_threads(A.shape[0]):
        if subset is not None:
            return _eigh(A, subset_by_index=list(subset), driver="evr", eigvals_only=eigvals_only,
                         check_finite=False)
        return _eigh(A, driver="evd", eigvals_only=eigvals_only, check_finite=False)


def top_eigenpairs(A: np.ndarray, k: int, min_size: int = 400, max_fraction: float = 0.1
                   ) -> tuple[np.ndarray, np.ndarray] | None:
    """Top ``k`` eigenpairs (descending) of a large symmetric PSD ``A`` by Lanczos iteration (ARPACK ``eigsh`` to
    machine precision, ``tol=0``, from a fixed start vector, so repeated calls give the same numbers), or ``None``
    when the matrix is small or ``k`` is a large fraction of it (then a LAPACK subset ``eigh`` is cheaper) or
    ARPACK does not converge. About 2x faster than the subset ``eigh`` for 64 of 1 280 eigenpairs (same
    eigenvalues to 1e-15 relative)."""
    m = A.shape[0]
    if m < min_size or k > max_fraction * m or k < 1:
        return None
    v0 = np.random.default_rng(0).standard_normal(m)
    try:
        with lapack_threads(m):
            w, V = eigsh(np.asarray(A, dtype=np.float64), k=k, which="LA", tol=0, v0=v0)
    except (ArpackNoConvergence, ArpackError):
        return None
    order = np.argsort(w)[::-1]
    return w[order].copy(), np.ascontiguousarray(V[:, order])


def dense_top_eigh(A: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top ``k`` eigenpairs (descending) of a formed symmetric PSD matrix ``A [m, m]``: the full LAPACK
    decomposition when ``m < 400`` or ``k > m / 3`` (then cheaper than a subset: 2.7 ms against 6 ms for 64 of
    192), ARPACK (:func:`top_eigenpairs`) for ``k <= m / 10`` (68 ms against 96 ms for LAPACK's subset and 145 ms
    for the full decomposition, 64 of 990), else LAPACK's subset driver (``evr``). One thread, measured in the same
    run. Every branch gives the eigenvalues to rounding and the eigenvectors to rounding over the eigengap.

    One BLAS thread (ARPACK: the number set by :func:`set_blas_threads`, if any): ARPACK's matrix-vector products
    are memory-bound and LAPACK's tridiagonalisation does not scale; with the default two threads on the busy
    2-core machine the 64 of 990 took 1.6x the one-thread time."""
    m = A.shape[0]
    k = min(int(k), m)
    with limit_blas_threads(1):
        if m < 400 or k > m // 3:
            w, V = _eigh(A, driver="evd", check_finite=False)
            return w[::-1][:k].copy(), np.ascontiguousarray(V[:, ::-1][:, :k])
        top = top_eigenpairs(A, k)
        if top is not None:
            return top
        w, V = _eigh(A, subset_by_index=[m - k, m - 1], driver="evr", check_finite=False)
        return w[::-1].copy(), np.ascontiguousarray(V[:, ::-1])


def varying_columns(Xc: np.ndarray) -> np.ndarray | None:
    """Indices of the columns of the centred features ``Xc [N, d]`` that are not identically zero (sorted), or
    ``None`` when every column varies (or none does: nothing to reduce to).

    A feature that is constant on the target set (a unit that never activates: after ReLU/ReLU6 on small target
    images, 606, 290 and 1 195 of the 1 280 penultimate units of EfficientNet-Lite0/1/2 on 3 000 Fashion-MNIST
    images at 32 px) centres to an exact zero column, hence an exact zero row and column of the scatter
    ``Xc^T Xc``. The scatter's nonzero eigenpairs (eigenvectors zero on the constant columns), its pseudo-inverse and
    every quadratic form with vectors that vanish there are therefore those of the varying columns' scatter: an
    exact reduction, not an approximation."""
    live = np.flatnonzero(Xc.any(axis=0))
    return None if len(live) in (0, Xc.shape[1]) else live


def _orthonormal_columns(V: np.ndarray, qr: Callable[..., Any]) -> np.ndarray:
    """Orthonormal basis of ``V``'s columns: Cholesky QR (``V R^-1`` with ``R^T R = V^T V``, a BLAS-3 product)
    when ``V`` is well conditioned, else Householder QR."""
    G = V.T @ V
    try:
        R = _chol(G, lower=False, check_finite=False)
    except np.linalg.LinAlgError:
        R = None
    if R is not None:
        d = np.abs(np.diag(R))
        if d.min() > 1e-5 * d.max():  # condition of V below ~1e5: one pass loses at most ~1e-6 orthogonality
            return solve_triangular(R, V.T, trans="T", lower=False, check_finite=False).T
    return qr(V, mode="economic", check_finite=False)[0]


def block_krylov_top(matmat: Callable[[np.ndarray], np.ndarray], m: int, k: int, *, block: int | None = None,
                     max_dim: int | None = None, tol: float = 2e-14) -> tuple[np.ndarray, np.ndarray] | None:
    """Top ``k`` eigenpairs (descending) of a symmetric PSD operator ``v -> A v`` of size ``m`` by block Krylov
    iteration with full reorthogonalisation and Rayleigh-Ritz, or ``None`` when it does not converge within
    ``max_dim`` basis vectors.

    The basis ``[V0, A V0, A^2 V0, ...]`` (``V0``: a fixed Gaussian block, so repeated calls give the same numbers)
    is orthonormalised block by block (two Gram-Schmidt and QR passes); the Ritz pairs of the top ``k`` are
    accepted when every residual ``||A u - theta u|| <= tol * theta_1`` -- about the rounding level of ``A``
    itself, so the eigenvalues agree with LAPACK's to ~1e-14 and the spanned subspace to ~1e-12. Products with
    ``block`` vectors at a time run at matrix-matrix speed: about 2x faster than ARPACK's one-vector Lanczos, and,
    given ``A = Xc^T Xc`` as ``Xc^T (Xc V)``, no ``d x d`` product ``Xc^T Xc`` is ever formed."""
    if k < 1 or k >= m:
        return None
    b = int(block) if block else max(16, min(64, k // 4))
    cap = int(max_dim) if max_dim else min(m, max(8 * k, 256))
    if cap < k + b:
        return None
    Q = np.empty((m, cap), order="F")  # column blocks Q[:, :j] stay contiguous for BLAS
    AQ = np.empty((m, cap), order="F")
    H = np.empty((cap, cap))  # Q^T A Q, grown block by block
    V = np.random.default_rng(0).standard_normal((m, b))
    j = 0
    next_check = min(max(k + b, 4 * k), cap)  # Rayleigh-Ritz costs an eigh of the basis size: not every block
    while j < cap:
        for _ in range(2):
            if j:
                V -= Q[:, :j] @ (Q[:, :j].T @ V)
            V = _orthonormal_columns(V, qr)
        bb = min(V.shape[1], cap - j)
        Q[:, j:j + bb] = V[:, :bb]
        AQ[:, j:j + bb] = matmat(np.ascontiguousarray(V[:, :bb]))
        H[:j + bb, j:j + bb] = Q[:, :j + bb].T @ AQ[:, j:j + bb]
        H[j:j + bb, :j] = H[:j, j:j + bb].T
        j += bb
        if j >= next_check or j >= cap:
            Hj = H[:j, :j]
            w, U = eigh((Hj + Hj.T) * 0.5)
            w, Uk = w[::-1][:k], U[:, ::-1][:, :k]
            res = np.linalg.norm(AQ[:, :j] @ Uk - Q[:, :j] @ (Uk * w), axis=0)
            if w[0] > 0 and res.max() <= tol * w[0]:
                return w.copy(), np.ascontiguousarray(Q[:, :j] @ Uk)
            next_check = j + (b if res.max() <= 1e3 * tol * max(w[0], 0.0) else 2 * b)
        V = AQ[:, j - bb:j].copy()
    return None


def svdvals(A: np.ndarray) -> np.ndarray:
    """Singular values of a (small) matrix."""
    with lapack_threads(min(A.shape) if A.size else 0):
        return np.linalg.svd(A, compute_uv=False)


def nuclear_norm(A: np.ndarray) -> float:
    """``||A||_*``, the sum of singular values (via the smaller Gram matrix when ``A`` is very tall)."""
    A = np.asarray(A, dtype=np.float64)
    if A.size == 0:
        return 0.0
    n, m = A.shape
    if n > 4 * m and m <= 512:
        # eigenvalues of A^T A are the squared singular values; cheaper than an SVD of a tall matrix
        w = eigh(A.T @ A, eigvals_only=True)
        return float(np.sum(np.sqrt(np.maximum(w, 0.0))))
    return float(np.sum(svdvals(A)))


def cholesky(A: np.ndarray) -> np.ndarray | None:
    """Lower Cholesky factor of a symmetric matrix, or ``None`` if it is not numerically positive definite."""
    L, info = lapack.dpotrf(np.asarray(A, dtype=np.float64), lower=1, clean=1)
    return L if info == 0 else None


def well_conditioned_cholesky(A: np.ndarray, rtol: float) -> np.ndarray | None:
    """Cholesky factor of ``A`` if no eigenvalue of ``A`` is below ``rtol * max`` (checked with the LAPACK
    1-norm condition estimate, with a safety factor 100), else ``None``: then ``A^+ = A^{-1}`` and a triangular
    solve gives the pseudo-inverse quadratic forms at a ninth of the cost of ``eigh``."""
    L = cholesky(A)
    if L is None:
        return None
    rcond, info = lapack.dpocon(L, float(np.abs(A).sum(0).max()), uplo="L")
    return L if info == 0 and rcond > 100.0 * rtol else None


def solve_lower(L: np.ndarray, B: np.ndarray) -> np.ndarray:
    """``L^{-1} B`` for a lower-triangular ``L``."""
    return solve_triangular(L, B, lower=True, check_finite=False)


def softmax(Z: np.ndarray) -> np.ndarray:
    """Row-wise softmax (stable), new array."""
    Z = Z - Z.max(axis=1, keepdims=True)
    np.exp(Z, out=Z)
    Z /= Z.sum(axis=1, keepdims=True)
    return Z


def minmax(values: np.ndarray) -> np.ndarray:
    """Min-max normalisation to ``[0, 1]`` across models; all-equal values give 0 (docs/methods.md#ncti)."""
    v = np.asarray(values, dtype=np.float64)
    lo, hi = np.min(v), np.max(v)
    if not np.isfinite(lo) or not np.isfinite(hi):
        out = np.full(v.shape, np.nan)
        return out
    if hi == lo:
        return np.zeros_like(v)
    return (v - lo) / (hi - lo)


def warn(message: str, category: type[Warning] = NumericalWarning, stacklevel: int = 3) -> None:
    warnings.warn(message, category, stacklevel=stacklevel)


# --------------------------------------------------------------------------------------- shrinkage LDA
def power_sigma_max(A: np.ndarray, n_iter: int = 3) -> float:
    """Largest eigenvalue estimate of the SFDA reference code (``iterative_A``): start from the row sums,
    ``n_iter`` double power steps, return ``x^T A y`` with the last two unit iterates (docs/methods.md#sfda)."""
    x = A.sum(axis=1)
    yv = x
    for _ in range(n_iter):
        t = A @ x
        nt = np.linalg.norm(t)
        if nt == 0.0:
            return 0.0
        yv = t / nt
        t = A @ yv
        nt = np.linalg.norm(t)
        if nt == 0.0:
            return 0.0
        x = t / nt
    return float(x @ A @ yv)


def shrink(S: np.ndarray, lam: float) -> np.ndarray:
    """``(1 - lam) S + lam (tr S / d) I``."""
    d = S.shape[0]
    out = (1.0 - lam) * S
    out.flat[:: d + 1] += lam * np.trace(S) / d
    return out


def lda_coef(Mc: np.ndarray, S: np.ndarray, priors: np.ndarray, fname: str) -> tuple[np.ndarray, np.ndarray]:
    """Linear-discriminant coefficients ``M S^-1`` ``[K, d]`` and intercepts ``-1/2 diag(M S^-1 M^T) + log pi``.

    ``S`` is the pooled covariance; a pseudo-inverse (relative cut-off ``d * eps``) with a
    :class:`NumericalWarning` replaces the inverse when ``S`` is not positive definite.
    """
    L = cholesky(S)
    if L is not None:
        coef = cho_solve((L, True), Mc.T, check_finite=False).T  # [K, d] = M S^-1
    else:
        w, V = eigh(S)
        keep = w > S.shape[0] * EPS * max(w[-1], 0.0)
        warn(f"{fname}: the pooled covariance is singular ({int((~keep).sum())} of {S.shape[0]} eigenvalues "
             "~0); using its pseudo-inverse.", NumericalWarning, stacklevel=4)
        coef = ((Mc @ V[:, keep]) / w[keep]) @ V[:, keep].T
    intercept = -0.5 * np.einsum("kd,kd->k", Mc, coef) + np.log(priors)
    return coef, intercept


def lda_logits(Xc: np.ndarray, Mc: np.ndarray, S: np.ndarray, priors: np.ndarray, fname: str) -> np.ndarray:
    """Linear-discriminant logits ``x^T S^-1 mu_k - 1/2 mu_k^T S^-1 mu_k + log pi_k`` ``[N, K]``.

    ``Xc`` and ``Mc`` share one centring (the posterior is translation invariant; centring keeps it exact).
    """
    coef, intercept = lda_coef(Mc, S, priors, fname)
    return Xc @ coef.T + intercept


def generalized_eigvecs(Sb: np.ndarray, Sw: np.ndarray, rtol: float | None = None) -> np.ndarray:
    """Eigenvectors of ``Sb v = lambda Sw v`` (descending), normalised ``V^T Sw V = I``.

    Computed by whitening with ``Sw``'s eigendecomposition, dropping directions with eigenvalue
    ``<= rtol * max`` (default ``p * eps``): equal to ``scipy.linalg.eigh(Sb, Sw)`` when ``Sw`` is non-singular,
    and to scikit-learn's ``svd`` solver's restriction to the non-null space otherwise.
    """
    p = Sw.shape[0]
    w, U = eigh(Sw)
    tol = (p * EPS if rtol is None else rtol) * max(w[-1], 0.0)
    keep = w > tol
    W = U[:, keep] / np.sqrt(w[keep])
    B = W.T @ Sb @ W
    e, R = eigh((B + B.T) * 0.5)
    return W @ R[:, ::-1]
