"""Streaming transferability scores: every score at any N, memory independent of N x d.

LogME, H-score and the collapse scores need only :class:`~nctransfer.stats.FeatureStats` (one pass). The scores
below need per-sample terms (posteriors, projections, energies); here they are computed from **re-iterable
batches** of features (a feature-store entry read shard by shard, :meth:`nctransfer.extract.TapResult.iter_batches`,
or :func:`array_batches`) in a few passes, so a target set of 10^6 samples with d = 2 048 never holds ``N x d``.

==========  ======  ==============================================================  ===============================
score       passes  what is kept                                                     memory
==========  ======  ==============================================================  ===============================
SFDA        4       statistics; the twice-softened confidence ``p_i``               ``O(d^2 + K d + N)``
ETran       2       statistics; the energy ``logsumexp(x_i)`` of every sample       ``O(d^2 + K d + N)``
TransRate   1 + G   statistics; per-class scatter about the global mean, G groups    ``O(B d^2)``, ``B`` classes per
                    of ``B`` classes per pass                                        pass (``max_bytes``)
GBC         2       PCA basis; the ``N x 64`` projection                            ``O(d^2 + N p)``
NCTI        2       PCA basis; the ``N x 64`` projection                            ``O(d^2 + N p)``
NLEEP       2       PCA basis; the ``N x p`` projection (80 % of the variance)      ``O(d^2 + N p)``
PARC        2       PCA basis (exact); the ``N x 32`` projection                    ``O(d^2 + N p)``, time ``O(N^2 p)``
==========  ======  ==============================================================  ===============================

Pass 1 is the statistics (skipped when a :class:`FeatureStats` of the same data is given, e.g. the one extraction
produced); the PCA basis is the top eigenvectors of its total scatter, with scikit-learn's sign convention, so the
projection equals the in-memory path's PCA scores. Each function then runs the same formulas as the in-memory score
(``nctransfer.transferability.<score>``): on the projection for the PCA scores, and with the per-sample sums
accumulated batch by batch for SFDA, ETran and TransRate. Streaming equals in-memory to rounding (relative 1e-8
measured; NLEEP's EM and the ``N x N``-pair ranks of PARC propagate it, documented tolerance 1e-6). PARC streams
with the exact PCA (``pca="exact"`` in memory); the default randomized PCA of the authors' code needs all rows.

Example:
    >>> import numpy as np
    >>> from nctransfer.transferability import gbc
    >>> rng = np.random.default_rng(0); y = np.repeat([0, 1, 2], 40); X = rng.normal(size=(120, 8)) + y[:, None]
    >>> bool(np.isclose(stream_score("gbc", array_batches(X, y, 32)), gbc(X, y)))
    True
"""

from __future__ import annotations

from typing import Any, Callable, Hashable, Iterable, Iterator  # noqa: F401

import numpy as np
import pandas as pd

from nctransfer.exceptions import InputValueError, NotFoundError
from nctransfer.stats import FeatureStats
from nctransfer.transferability._common import (
    Workspace,
    check_positive_float,
    check_positive_int,
    eigh,
    lda_coef,
    shrink,
    softmax,
    warn,
)
from nctransfer.transferability.base import get_method
from nctransfer.transferability.etran import _row_logsumexp
from nctransfer.transferability.gbc import gbc
from nctransfer.transferability.ncti import ncti_terms
from nctransfer.transferability.nleep import nleep
from nctransfer.transferability.parc import parc
from nctransfer.transferability.sfda import adaptive_shrinkage
from nctransfer.transferability.transrate import _half_logdet_identity_plus

#: a zero-argument callable returning an iterable of ``(X [b, d], y [b])`` batches; called once per pass
Batches = Callable[[], Iterable[tuple[Any, Any]]]

#: how each score scales in the streaming path (``passes``, kept state)
SCALING: dict[str, str] = {
    "sfda": "4 passes; O(d^2 + K d) state plus N floats",
    "etran": "2 passes; O(d^2 + K d) state plus N floats (energies)",
    "transrate": "1 + ceil(K / B) passes; O(B d^2) state, B classes per pass (max_bytes)",
    "gbc": "2 passes; O(d^2) PCA basis plus the N x 64 projection",
    "ncti": "2 passes; O(d^2) PCA basis plus the N x 64 projection",
    "nleep": "2 passes; O(d^2) PCA basis plus the N x p projection (80% variance)",
    "parc": "2 passes; O(d^2) PCA basis plus the N x 32 projection; O(N^2 p) time",
    "logme": "1 pass (FeatureStats)",
    "hscore": "1 pass (FeatureStats)",
}


# ------------------------------------------------------------------------------------------------ sources
def array_batches(X: Any, y: Any, batch_rows: int = 4096) -> Batches:
    """Re-iterable batches of ``batch_rows`` rows of in-memory ``X [N, d]``, ``y [N]`` (tests, benchmarks)."""
    X = np.asarray(X)
    y = np.asarray(y)
    if X.ndim != 2 or len(X) != len(y):
        raise InputValueError(f"array_batches: expected X [N, d] and y [N]; got {X.shape} and {y.shape}.")
    step = check_positive_int(batch_rows, "batch_rows", "array_batches")

    def it() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for s in range(0, len(X), step):
            yield X[s:s + step], y[s:s + step]
    return it


def _f64(X: Any) -> np.ndarray:
    if hasattr(X, "detach"):
        X = X.detach().cpu().numpy()
    return np.asarray(X, dtype=np.float64)


class _Pass1:
    """Statistics of the data in sorted class order (from a given FeatureStats or one pass)."""

    def __init__(self, batches: Batches, stats: FeatureStats | None, fname: str) -> None:
        if stats is None:
            stats = FeatureStats()
            for X, y in batches():
                stats.update(_f64(X), np.asarray(y))
        if stats.n_samples == 0:
            raise InputValueError(f"{fname}: the batches hold no samples.")
        if stats.n_classes < 2:
            raise InputValueError(f"{fname}: at least 2 classes are needed; got {stats.n_classes}.")
        self.stats = stats
        self.fname = fname
        self.n = stats.n_samples
        self.classes: list[Hashable] = list(stats.classes)
        self.K = len(self.classes)
        self.counts = stats.class_counts().astype(np.float64)
        self.priors = self.counts / self.n
        self.mean = stats.global_mean()
        self.M = stats.class_means() - self.mean  # centred class means [K, d]
        self.d = self.M.shape[1]
        self._index = pd.Index(self.classes)

    def codes(self, y: Any) -> np.ndarray:
        c = self._index.get_indexer(np.asarray(y).tolist())
        if (c < 0).any():
            raise InputValueError(f"{self.fname}: a batch holds labels not seen in the statistics (the batches must "
                                  "yield the same data on every pass).")
        return c.astype(np.int64)

    def scatter_T(self) -> np.ndarray:
        S = self.stats.sigma_T() * self.n
        return (S + S.T) * 0.5

    def scatter_W(self) -> np.ndarray:
        S = self.scatter_T() - (self.M.T * self.counts) @ self.M
        return (S + S.T) * 0.5

    def pca_basis(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` components ``[d, k]`` (largest loading positive) and all eigenvalues of the scatter (desc.)."""
        w, V = eigh(self.scatter_T())
        w, V = w[::-1], V[:, ::-1][:, :k]
        idx = np.argmax(np.abs(V), axis=0)
        signs = np.sign(V[idx, np.arange(V.shape[1])])
        signs[signs == 0] = 1.0
        return V * signs, np.maximum(w, 0.0)

    def project(self, batches: Batches, comps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pass 2: the ``[N, k]`` PCA scores of every sample and the class codes ``[N]``."""
        Z = np.empty((self.n, comps.shape[1]))
        codes = np.empty(self.n, dtype=np.int64)
        pos = 0
        for X, y in batches():
            Xb = _f64(X)
            b = len(Xb)
            if pos + b > self.n:
                raise InputValueError(f"{self.fname}: the batches yield more samples than on the first pass.")
            Z[pos:pos + b] = (Xb - self.mean) @ comps
            codes[pos:pos + b] = self.codes(y)
            pos += b
        if pos != self.n:
            raise InputValueError(f"{self.fname}: the batches yield {pos} samples, {self.n} on the first pass.")
        return Z, codes

    def labels(self, codes: np.ndarray) -> np.ndarray:
        return np.asarray(self.classes)[codes]

    def projection_workspace(self, batches: Batches, k: int | None) -> Workspace:
        """Pass 2 into a :class:`Workspace` of the ``[N, k]`` PCA scores (``k=None``: the centred features)."""
        comps = np.eye(self.d) if k is None else self.pca_basis(k)[0]
        Z, codes = self.project(batches, comps)
        return Workspace(Z, self.labels(codes), self.fname)


def _pca_dims(n: int, d: int, wanted: int, rule: str, fname: str) -> int:
    lim = min(n, d)
    k = (wanted if lim >= wanted else max(lim - 1, 1)) if rule == "spec" else max(min(wanted, d, n - 1), 1)
    if k < wanted:
        warn(f"{fname}: PCA to n_components={wanted} dims needs min(N, d) >= {wanted} but N={n}, d={d}; "
             f"using {k} dims instead.", stacklevel=4)
    return k


# ------------------------------------------------------------------------------------------------ scores
def _gbc(p1: _Pass1, batches: Batches, *, gaussian: str = "spherical", n_components: int | None = 64,
         var_floor: float = 1e-4) -> float:
    k = None if n_components is None else _pca_dims(p1.n, p1.d, int(n_components), "available", "gbc")
    ws = p1.projection_workspace(batches, k)
    return float(gbc(ws, gaussian=gaussian, n_components=k, var_floor=var_floor))


def _ncti(p1: _Pass1, batches: Batches, *, n_components: int = 64, n_top: int = 32,
          min_shrinkage: float = 1e-10) -> dict[str, float]:
    k = _pca_dims(p1.n, p1.d, check_positive_int(n_components, "n_components", "ncti"), "spec", "ncti")
    ws = p1.projection_workspace(batches, k)
    return ncti_terms(ws, n_components=k, n_top=n_top, min_shrinkage=min_shrinkage)


def _parc(p1: _Pass1, batches: Batches, *, n_components: int | None = 32, pca: str = "exact",
          **options: Any) -> float:
    if pca != "exact":
        raise InputValueError("parc: the streaming path uses the exact PCA (pca='exact'); the randomized PCA of the "
                              f"authors' code needs every row in memory; got pca={pca!r}.")
    k = None if n_components is None else _pca_dims(p1.n, p1.d, int(n_components), "available", "parc")
    ws = p1.projection_workspace(batches, k)
    return float(parc(ws, n_components=k, pca="exact", **options))


def _nleep(p1: _Pass1, batches: Batches, *, variance: float = 0.8, **options: Any) -> float:
    variance = check_positive_float(variance, "variance", "nleep")
    comps, w = p1.pca_basis(p1.d)
    if w.sum() <= 0:
        raise InputValueError("nleep: the features have zero variance; no principal component to keep.")
    k = min(int(np.searchsorted(np.cumsum(w) / w.sum(), variance - 1e-12) + 1), len(w))
    Z, codes = p1.project(batches, comps[:, :k])
    return float(nleep(Workspace(Z, p1.labels(codes), "nleep"), variance=1.0, **options))


def _transrate(p1: _Pass1, batches: Batches, *, eps: float = 1e-4, max_bytes: int = 2 << 30) -> float:
    eps = check_positive_float(eps, "eps", "transrate")
    total = _half_logdet_identity_plus(p1.scatter_T(), 1.0 / (p1.n * eps))
    per_pass = max(1, int(max_bytes // max(8 * p1.d * p1.d, 1)))
    per_class = 0.0
    for g0 in range(0, p1.K, per_pass):
        group = np.arange(g0, min(p1.K, g0 + per_pass))
        G = np.zeros((len(group), p1.d, p1.d))
        for X, y in batches():
            c = p1.codes(y)
            Xc = _f64(X) - p1.mean
            for j, k in enumerate(group):
                R = Xc[c == k]
                if len(R):
                    G[j] += R.T @ R
        for j, k in enumerate(group):
            S = (G[j] + G[j].T) * 0.5
            per_class += _half_logdet_identity_plus(S, 1.0 / (p1.counts[k] * eps))
    return float(total - per_class / p1.K)


def _lda_posterior_batches(p1: _Pass1, batches: Batches, S: np.ndarray
                           ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    coef, b = lda_coef(p1.M, S, p1.priors, p1.fname)
    for X, y in batches():
        Xc = _f64(X) - p1.mean
        yield Xc, p1.codes(y), softmax(Xc @ coef.T + b)


def _sfda(p1: _Pass1, batches: Batches, *, a: float = 5.0, n_power_iter: int = 3, shrinkage: float | None = None,
          min_shrinkage: float = 1e-10) -> float:
    Sw = p1.scatter_W() / p1.n
    lam = adaptive_shrinkage(Sw, a, n_power_iter, min_shrinkage) if shrinkage is None else float(shrinkage)
    K, d = p1.K, p1.d
    others = (p1.M.sum(0) - p1.M) / (K - 1)
    # pass 2: the twice-softened true-class confidence p_i and its class sums
    p = np.empty(p1.n)
    psum = np.zeros(K)
    pxsum = np.zeros((K, d))
    pos = 0
    for Xc, c, P in _lda_posterior_batches(p1, batches, shrink(Sw, lam)):
        rows = np.arange(len(c))
        pb = softmax(P)[rows, c]
        p[pos:pos + len(c)] = pb
        np.add.at(psum, c, pb)
        np.add.at(pxsum, c, Xc * pb[:, None])
        pos += len(c)
    pbar = psum / p1.counts
    a_c = pxsum / p1.counts[:, None]
    M2 = a_c + (1.0 - pbar)[:, None] * others
    # pass 3: within scatter of the mixed samples r_i = p_i x_i - a_c - (p_i - pbar_c) o_c (two-pass exact)
    Sw2 = np.zeros((d, d))
    pos = 0
    for X, y in batches():
        c = p1.codes(y)
        pb = p[pos:pos + len(c)]
        R = (_f64(X) - p1.mean) * pb[:, None]
        R -= a_c[c]
        R -= (pb - pbar[c])[:, None] * others[c]
        Sw2 += R.T @ R
        pos += len(c)
    Sw2 = (Sw2 + Sw2.T) * (0.5 / p1.n)
    # pass 4: posterior of the mixed samples with the same lambda
    coef2, b2 = lda_coef(M2, shrink(Sw2, lam), p1.priors, "sfda")
    o_coef = others @ coef2.T
    acc = 0.0
    pos = 0
    for X, y in batches():
        c = p1.codes(y)
        pb = p[pos:pos + len(c)]
        logits2 = pb[:, None] * ((_f64(X) - p1.mean) @ coef2.T) + (1.0 - pb)[:, None] * o_coef[c] + b2
        acc += float(softmax(logits2)[np.arange(len(c)), c].sum())
        pos += len(c)
    return acc / p1.n


def _etran(p1: _Pass1, batches: Batches, *, percent: float = 0.5, tail: str = "bottom",
           lda_covariance: str = "identity", a: float = 5.0, n_power_iter: int = 3,
           min_shrinkage: float = 1e-10) -> dict[str, float]:
    percent = check_positive_float(percent, "percent", "etran")
    if not 0 < percent <= 100 or tail not in ("bottom", "top") or lda_covariance not in ("identity", "shrunk"):
        raise InputValueError(f"etran: percent in (0, 100], tail 'bottom'|'top', lda_covariance "
                              f"'identity'|'shrunk'; got {percent!r}, {tail!r}, {lda_covariance!r}.")
    if lda_covariance == "shrunk":
        Sw = p1.scatter_W() / p1.n
        S = shrink(Sw, adaptive_shrinkage(Sw, a, n_power_iter, min_shrinkage))
    else:
        S = np.eye(p1.d)
    energies = np.empty(p1.n)
    lda = 0.0
    pos = 0
    coef, b = lda_coef(p1.M, S, p1.priors, "etran")
    for X, y in batches():
        Xb = _f64(X)
        c = p1.codes(y)
        energies[pos:pos + len(c)] = _row_logsumexp(Xb)
        lda += float(softmax((Xb - p1.mean) @ coef.T + b)[np.arange(len(c)), c].sum())
        pos += len(c)
    k = max(1, int(np.floor(percent * p1.n / 100.0 + 1e-9)))
    Es = np.sort(energies)
    energy = float(Es[:k].mean() if tail == "bottom" else Es[-k:].mean())
    return {"energy": energy, "lda": lda / p1.n}


def _from_stats(name: str) -> Callable[..., float]:
    def fn(p1: _Pass1, batches: Batches, **options: Any) -> float:
        return float(get_method(name).fn(p1.stats, **options))
    return fn


_STREAMING: dict[str, Callable[..., Any]] = {
    "sfda": _sfda, "etran": _etran, "transrate": _transrate, "gbc": _gbc, "ncti": _ncti, "nleep": _nleep,
    "parc": _parc, "logme": _from_stats("logme"), "hscore": _from_stats("hscore"),
}


def streaming_methods() -> list[str]:
    """Names of the scores with a streaming path."""
    return list(_STREAMING)


def stream_score(name: str, batches: Batches, *, stats: FeatureStats | None = None, **options: Any) -> Any:
    """Score re-iterable batches of features without holding ``N x d``.

    Args:
        name: ``sfda``, ``etran``, ``transrate``, ``gbc``, ``ncti``, ``nleep``, ``parc`` (and ``logme``,
            ``hscore``, which need only the statistics).
        batches: zero-argument callable returning an iterable of ``(X [b, d], y [b])``; it is called once per pass
            and must yield the same samples in the same order every time (e.g.
            :meth:`nctransfer.extract.TapResult.iter_batches`, :func:`array_batches`).
        stats: the :class:`FeatureStats` of the same data when already known (saves the first pass).
        **options: the in-memory score's options (same names and defaults).

    Returns:
        The score (a float), or for the pool-relative NCTI and ETran their per-model terms (combine a pool's terms
        with ``METHODS[name].combine``), exactly as the in-memory functions return them.
    """
    key = str(name).strip().lower()
    if key not in _STREAMING:
        raise NotFoundError(f"stream_score: no streaming path for {name!r}; available: {sorted(_STREAMING)}.")
    if not callable(batches):
        raise InputValueError(f"stream_score: batches must be a zero-argument callable returning (X, y) batches "
                              f"(it is iterated once per pass); got {type(batches).__name__}.")
    return _STREAMING[key](_Pass1(batches, stats, key), batches, **options)


__all__ = ["Batches", "SCALING", "array_batches", "stream_score", "streaming_methods"]
