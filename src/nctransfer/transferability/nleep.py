"""NLEEP: LEEP with a Gaussian-mixture "source classifier" fitted on the target features (docs/methods.md#nleep).

Li, Jia, Sang, Zhu, Green, Wang & Gong, "Ranking Neural Checkpoints", CVPR 2021.

PCA keeping 80% of the variance; a Gaussian mixture with ``5 K`` components (full covariance, k-means
initialisation, seeded); then LEEP (docs/methods.md#leep, the mean *log* likelihood) with the mixture's posteriors
as ``theta``. The mixture is fitted on the rows in a canonical (lexicographic) order so that the result does not
depend on the order of the samples. When the fit fails (ill-conditioned covariances) it falls back, with a
:class:`NumericalWarning`, to diagonal covariances, then to fewer components; more components than samples are
reduced to ``N``.

Relation to released code: the NLEEP authors released no implementation. The copy that produced the NLEEP
numbers published by later papers (in the code of SFDA, ETran and PED) differs in two ways, which explain why its
values differ from the default here by up to 11x on some real taps:

1. it returns the mean *probability* ``(1/N) sum_i sum_z P(y_i | z) theta_i(z)`` instead of the mean
   *log*-probability (``log=False`` reproduces this; on well-separated features the mean probability is near 1
   and the mean log near 0, so their ratio grows without bound);
2. its mixture is fitted with an unseeded k-means initialisation, so its value changes from run to run (here
   ``seed`` fixes it).

The default keeps the paper's definition (LEEP's mean log-likelihood), since there is no authors' code to follow.

Speed: the PCA needs only the leading eigenpairs (on the varying columns' scatter, or by block Krylov on the centred
features) and the total variance (the trace) to choose the kept dimensions, and the full-covariance EM runs
scikit-learn's algorithm with its per-component loops batched and the samples' outer products kept for the fit
(same initialisation, iterations and convergence test; parameters equal to rounding).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning as SkConvergenceWarning
from sklearn.mixture import GaussianMixture

from nctransfer.exceptions import ConvergenceWarning, InputValueError
from nctransfer.transferability._common import (
    blas_limited,
    check_positive_float,
    check_positive_int,
    lapack_threads,
    warn,
    workspace,
)
from nctransfer.transferability.base import register
from nctransfer.transferability.leep import leep_from_probs

_COVS = ("full", "tied", "diag", "spherical")
_OUTER_BYTES = 2 ** 28  # the EM keeps the samples' outer products [N, p (p + 1) / 2] up to 256 MB


def _pca_variance(ws: Any, fraction: float) -> np.ndarray:
    m = ws.n if ws.gram_domain else ws.d
    if m >= 400 and "eigh_T" not in ws._cache and not ws.on_gpu:
        # the kept dimensions usually are a few dozen of hundreds: the top eigenpairs and the total variance (the
        # trace) decide k exactly as the full spectrum would, without its O(d^3) decomposition. The top eigenpairs
        # come from the varying columns' scatter when features are constant or N >= 2d (Workspace.seed_top_eigh), else by
        # block Krylov; 32, 64, 128, ... of them until they hold the fraction (a request for m / 6 at once, as
        # before, cost seconds of Krylov iteration at d = 1 280 when 33 were needed)
        total = float(np.einsum("ij,ij->", ws.Xc, ws.Xc))
        k0 = 32
        while k0 <= m // 6:
            ws.seed_top_eigh(k0)
            w_top = np.maximum(ws.top_eigh_T(k0)[0], 0.0)
            if total > 0 and len(w_top) and np.sum(w_top) / total >= fraction - 1e-12:
                k = int(np.searchsorted(np.cumsum(w_top) / total, fraction - 1e-12) + 1)
                return ws.pca(min(k, len(w_top)))[0]
            k0 *= 2
    w, _ = ws.eigh_T()
    w = np.maximum(w[::-1], 0.0)
    total = w.sum()
    if total <= 0:
        raise InputValueError("nleep: the features have zero variance; no principal component to keep.")
    k = int(np.searchsorted(np.cumsum(w) / total, fraction - 1e-12) + 1)
    k = min(k, len(w))
    return ws.pca(k)[0]


def _gaussian_mixture_class() -> Any:
    """scikit-learn's ``GaussianMixture`` with the full-covariance EM steps computed for all components at once.

    Same initialisation (k-means, the same random state), the same iterations, convergence test and lower bound
    (inherited); only the arithmetic of the three per-component loops is batched -- the E-step's
    ``||(x - mu_k) L_k||^2`` as one product with every component's precision factor, the M-step's weighted
    scatter from one product of the responsibilities with the samples' outer products (the centred form
    ``sum_i r_ik (x_i - mu_k)(x_i - mu_k)^T`` expanded around the global origin of the centred PCA scores), and
    the Cholesky factors as one stacked factorisation. While the samples' outer products ``x_i x_j`` (``i <= j``)
    fit in ``_OUTER_BYTES`` they are formed once per fit and both steps are one product with them: the E-step's
    ``x^T S_k x - 2 x^T S_k mu_k + mu_k^T S_k mu_k`` (``S_k`` the precision) with every precision's upper triangle,
    the M-step's scatter with the responsibilities (2.5x faster EM at N = 3 000, p = 35, 50 components, where the
    per-iteration ``[N, p K]`` intermediate of the factor form did not fit in cache). The parameters agree with
    scikit-learn's to rounding
    (relative ~1e-12 after 100 iterations on real features); 2-4x faster at 5K = 50 components, where
    scikit-learn's loops issue hundreds of small operations per iteration."""
    class _BatchedGaussianMixture(GaussianMixture):
        def _outer_products(self, X: np.ndarray) -> np.ndarray | None:
            """The samples' outer products ``x_i x_j`` (``i <= j``) ``[N, p (p + 1) / 2]``, kept for the array EM
            iterates on (the same ``X`` at every step); ``None`` above ``_OUTER_BYTES``."""
            n, p = X.shape
            if n * p * (p + 1) // 2 * 8 > _OUTER_BYTES:
                return None
            cached = getattr(self, "_outer_cache", None)
            if cached is not None and cached[0] is X:
                return cached[1]
            iu = np.triu_indices(p)
            X2 = X[:, iu[0]] * X[:, iu[1]]
            self._outer_cache = (X, X2)
            return X2

        def _estimate_log_prob(self, X: np.ndarray, xp: Any = None) -> np.ndarray:
            if self.covariance_type != "full":
                return super()._estimate_log_prob(X, xp=xp)
            P = self.precisions_cholesky_  # [k, p, p]
            k, p, _ = P.shape
            log_det = np.log(np.diagonal(P, axis1=1, axis2=2)).sum(1)
            X2 = self._outer_products(X)
            if X2 is not None:
                # ||(x - mu_k) L_k||^2 = x^T S_k x - 2 x^T S_k mu_k + mu_k^T S_k mu_k with S_k = L_k L_k^T: one
                # product of the outer products with every precision's upper triangle (off-diagonal counted twice)
                S = P @ P.transpose(0, 2, 1)
                iu = np.triu_indices(p)
                Q = (S[:, iu[0], iu[1]] * np.where(iu[0] == iu[1], 1.0, 2.0)).T  # [p (p + 1) / 2, k]
                Sm = np.einsum("kij,kj->ki", S, self.means_)
                dist = X2 @ Q
                dist -= 2.0 * (X @ Sm.T)
                dist += np.einsum("ki,ki->k", Sm, self.means_)
                return -0.5 * (p * np.log(2 * np.pi) + dist) + log_det
            # columns ordered (output dim l, component k): the sum over l adds p contiguous [rows, k] blocks
            shift = np.einsum("kj,kjl->lk", self.means_, P).reshape(p * k)
            W = P.transpose(1, 2, 0).reshape(p, p * k)
            out = np.empty((X.shape[0], k))
            step = max(1, 2 ** 22 // max(k * p, 1))  # rows per chunk: ~32 MB of intermediate
            for start in range(0, X.shape[0], step):
                Y = X[start:start + step] @ W
                Y -= shift
                np.square(Y, out=Y)
                acc = out[start:start + step]
                acc[...] = Y[:, :k]
                for l in range(1, p):
                    acc += Y[:, l * k:(l + 1) * k]
            return -0.5 * (p * np.log(2 * np.pi) + out) + log_det

        def _estimate_log_prob_resp(self, X: np.ndarray, xp: Any = None) -> tuple[np.ndarray, np.ndarray]:
            if self.covariance_type != "full":
                return super()._estimate_log_prob_resp(X, xp=xp)
            wlp = self._estimate_log_prob(X) + np.log(self.weights_)
            m = wlp.max(axis=1)
            m[~np.isfinite(m)] = 0.0
            norm = np.log(np.exp(wlp - m[:, None]).sum(axis=1)) + m
            with np.errstate(under="ignore"):
                return norm, wlp - norm[:, None]

        def _m_step(self, X: np.ndarray, log_resp: np.ndarray, xp: Any = None) -> None:
            if self.covariance_type != "full":
                return super()._m_step(X, log_resp, xp=xp)
            n, p = X.shape
            resp = np.exp(log_resp)
            rs = resp.sum(0)
            nk = rs + 10 * np.finfo(resp.dtype).eps
            s1 = resp.T @ X  # [k, p]
            means = s1 / nk[:, None]
            k = resp.shape[1]
            X2 = self._outer_products(X)
            if X2 is not None:  # the kept outer products: one product, the upper triangle mirrored
                iu = np.triu_indices(p)
                C = np.empty((k, p, p))
                C[:, iu[0], iu[1]] = resp.T @ X2
                C[:, iu[1], iu[0]] = C[:, iu[0], iu[1]]
            else:
                step = max(1, 2 ** 22 // max(p * p, 1))
                C = np.zeros((k, p * p))
                for start in range(0, n, step):
                    Xb = X[start:start + step]
                    C += resp[start:start + step].T @ (Xb[:, :, None] * Xb[:, None, :]).reshape(len(Xb), p * p)
                C = C.reshape(k, p, p)
            ms = np.einsum("ki,kj->kij", means, s1)
            cov = (C - ms - ms.transpose(0, 2, 1) + rs[:, None, None] * np.einsum("ki,kj->kij", means, means))
            cov /= nk[:, None, None]
            cov[:, np.arange(p), np.arange(p)] += self.reg_covar
            try:
                L = np.linalg.cholesky(cov)
            except np.linalg.LinAlgError:
                raise ValueError("Fitting the mixture model failed because some components have ill-defined "
                                 "empirical covariance (for instance caused by singleton or collapsed samples). "
                                 "Try to decrease the number of components, or increase reg_covar.") from None
            self.weights_ = nk / nk.sum()
            self.means_ = means
            self.covariances_ = cov
            self.precisions_cholesky_ = np.linalg.solve(L, np.broadcast_to(np.eye(p), L.shape)).transpose(0, 2, 1)
            return None

    return _BatchedGaussianMixture


def _fit_gmm(Z: np.ndarray, k: int, covariance: str, seed: int, max_iter: int, reg_covar: float,
             batched: bool = True) -> Any:
    order = np.lexsort(Z.T[::-1])  # canonical row order: sample-order invariant
    cls = _gaussian_mixture_class() if batched else GaussianMixture
    gmm = cls(n_components=k, covariance_type=covariance, init_params="kmeans", random_state=seed,
              max_iter=max_iter, reg_covar=reg_covar)
    with warnings.catch_warnings(record=True) as caught, lapack_threads(10 ** 9):
        # EM makes many small BLAS calls per component: threads only add overhead (measured 2.3x slower with 2)
        warnings.simplefilter("always", SkConvergenceWarning)
        gmm.fit(Z[order])
    if any(issubclass(w.category, SkConvergenceWarning) for w in caught):
        warnings.warn(f"nleep: the Gaussian mixture ({k} components, {covariance}) did not converge in "
                      f"max_iter={max_iter} EM iterations.", ConvergenceWarning, stacklevel=4)
    return gmm


@blas_limited
def nleep(X: Any, y: Any = None, *, variance: float = 0.8, components_per_class: int = 5,
          covariance: str = "full", seed: int = 0, max_iter: int = 100, reg_covar: float = 1e-6,
          log: bool = True) -> float:
    """NLEEP score (docs/methods.md#nleep).

    Args:
        X: features ``[N, d]``; y: labels ``[N]``.
        variance: fraction of the variance kept by the PCA (0.8).
        components_per_class: mixture components per target class (5; the mixture has ``5 K``).
        covariance: ``"full"`` (default), ``"diag"``, ``"tied"`` or ``"spherical"``.
        seed: seed of the k-means initialisation.
        max_iter: EM iterations (100, scikit-learn's default).
        reg_covar: ridge added to the covariances (1e-6, scikit-learn's default).
        log: True (default, the paper's definition): mean log-likelihood. False: mean probability, as the copy in
            the SFDA / ETran / PED code computes it (see the module docstring).

    Returns:
        NLEEP (a mean log-likelihood, ``<= 0``; ``log=False``: a mean probability in ``[0, 1]``; higher = better).

    Warns:
        NumericalWarning: fewer components or diagonal covariances used (ill-conditioned mixture, or more
            components than samples).

    Cost: PCA ``O(N d^2 + d^3)``; EM ``O(max_iter N (5K) p^2)`` with ``p`` the kept dimensions -- the slowest
    score; excluded from ``rank(methods=None)``.
    """
    fname = "nleep"
    variance = check_positive_float(variance, "variance", fname)
    if variance > 1:
        raise InputValueError(f"nleep: variance must be a fraction in (0, 1]; got {variance!r}.")
    cpc = check_positive_int(components_per_class, "components_per_class", fname)
    if covariance not in _COVS:
        raise InputValueError(f"nleep: covariance must be one of {_COVS}; got {covariance!r}.")
    max_iter = check_positive_int(max_iter, "max_iter", fname)
    reg_covar = check_positive_float(reg_covar, "reg_covar", fname)
    ws = workspace(X, y, fname)
    Z = _pca_variance(ws, variance)
    k = cpc * ws.K
    if k > ws.n:
        warn(f"nleep: {cpc} x {ws.K} = {k} mixture components exceed the {ws.n} samples; using {ws.n}.",
             stacklevel=4)
        k = ws.n
    attempts = [(k, covariance)]
    if covariance != "diag":
        attempts.append((k, "diag"))
    kk = k // 2
    while kk >= 1:
        attempts.append((kk, "diag"))
        kk //= 2
    last: Exception | None = None
    for i, (kc, cov) in enumerate(attempts):
        try:
            gmm = _fit_gmm(Z, kc, cov, seed, max_iter, reg_covar)
            with lapack_threads(10 ** 9):
                theta = gmm.predict_proba(Z)
        except (ValueError, np.linalg.LinAlgError) as exc:
            last = exc
            continue
        if i > 0:
            warn(f"nleep: the {attempts[0][0]}-component {attempts[0][1]}-covariance mixture failed ({last}); "
                 f"used {kc} components with {cov} covariances instead.", stacklevel=4)
        return leep_from_probs(ws.codes, ws.K, theta, log=bool(log))
    raise InputValueError(f"nleep: no Gaussian mixture could be fitted to the PCA features ({last}).")


nleep = register("nleep", title="NLEEP", spec="docs/methods.md#nleep",
         reference="Li, Jia, Sang, Zhu, Green, Wang & Gong, CVPR 2021",
         passes=3, expensive=True, randomized=True, cost="O(N d^2 + d^3) + O(iters N K p^2)")(nleep)

__all__ = ["nleep"]
