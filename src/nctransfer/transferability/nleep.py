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
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

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


def _pca_variance(ws: Any, fraction: float) -> np.ndarray:
    w, _ = ws.eigh_T()
    w = np.maximum(w[::-1], 0.0)
    total = w.sum()
    if total <= 0:
        raise InputValueError("nleep: the features have zero variance; no principal component to keep.")
    k = int(np.searchsorted(np.cumsum(w) / total, fraction - 1e-12) + 1)
    k = min(k, len(w))
    return ws.pca(k)[0]


def _fit_gmm(Z: np.ndarray, k: int, covariance: str, seed: int, max_iter: int, reg_covar: float) -> Any:
    from sklearn.exceptions import ConvergenceWarning as SkConvergenceWarning
    from sklearn.mixture import GaussianMixture

    order = np.lexsort(Z.T[::-1])  # canonical row order: sample-order invariant
    gmm = GaussianMixture(n_components=k, covariance_type=covariance, init_params="kmeans", random_state=seed,
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


nleep = register("nleep", title="NLEEP", spec="2.4",
         reference="Li, Jia, Sang, Zhu, Green, Wang & Gong, CVPR 2021",
         passes=3, expensive=True, randomized=True, cost="O(N d^2 + d^3) + O(iters N K p^2)")(nleep)

__all__ = ["nleep"]
