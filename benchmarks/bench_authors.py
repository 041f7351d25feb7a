"""Every transferability score beside a straightforward re-implementation of its authors' released code (the
formulas and the library calls that code makes, written here, not copied), timed in one run on the same real
features, with the relative difference of the two values.

    python benchmarks/bench_authors.py                   # EfficientNet-Lite0 taps on digits, N = 1 500
    python benchmarks/bench_authors.py --n 3000 --taps 8 --threads 0   # default BLAS threads

Features: ``--taps`` evenly spaced taps of EfficientNet-Lite0 (widths 16-1 280) on ``--n`` digits images at 32 px
(cached under ``.cache/``). Each method is timed on every tap (best of two when fast) with ``--threads`` BLAS threads
(1 by default: one-thread timings; 0: the library default). The ratio is authors' seconds / nctransfer seconds,
summed over the taps. NLEEP runs 10 EM iterations in both implementations (the same scikit-learn mixture).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


# ----------------------------------------------------------------------------------- authors' code, re-written
def hscore_authors(X: np.ndarray, y: np.ndarray) -> float:
    """Bao et al.: tr(pinv(cov(f)) cov(g)), g = each sample's class mean."""
    cov_f = np.cov(X, rowvar=False)
    g = np.zeros_like(X)
    for c in np.unique(y):
        g[y == c] = X[y == c].mean(0)
    cov_g = np.cov(g, rowvar=False)
    return float(np.trace(np.linalg.pinv(cov_f, rcond=1e-15) @ cov_g))


def reg_hscore_authors(X: np.ndarray, y: np.ndarray) -> float:
    """Ibrahim et al.: Ledoit-Wolf shrunk covariance; tr(inv(cov_f) (1 - alpha) cov_g)."""
    from sklearn.covariance import LedoitWolf

    lw = LedoitWolf(assume_centered=False).fit(X)
    cov_f, alpha = lw.covariance_, lw.shrinkage_
    g = np.zeros_like(X)
    for c in np.unique(y):
        g[y == c] = X[y == c].mean(0)
    cov_g = np.cov(g, rowvar=False)
    return float(np.trace(np.linalg.pinv(cov_f, rcond=1e-15) @ ((1 - alpha) * cov_g)))


def transrate_authors(X: np.ndarray, y: np.ndarray, eps: float = 1e-4) -> float:
    """Huang et al.: R(Z) = 1/2 logdet(I_d + Z^T Z / (n eps)) of the centred features minus the class average."""
    def rate(Z: np.ndarray) -> float:
        n, d = Z.shape
        return 0.5 * np.linalg.slogdet(np.eye(d) + (1 / (n * eps)) * Z.T @ Z)[1]

    Z = X - X.mean(0, keepdims=True)
    K = int(y.max() + 1)
    return float(rate(Z) - sum(rate(Z[y == i]) for i in range(K)) / K)


def gbc_authors(X: np.ndarray, y: np.ndarray) -> float:
    """Pandy et al.: PCA 64, per-class spherical Gaussians (mean, averaged per-dim variance), Bhattacharyya pairs."""
    from sklearn.decomposition import PCA

    Z = PCA(n_components=min(64, X.shape[1], X.shape[0] - 1)).fit_transform(X)
    classes = np.unique(y)
    stats = []
    for c in classes:
        Zc = Z[y == c]
        stats.append((Zc.mean(0), max(float(np.maximum(Zc.var(0), 1e-4).mean()), 1e-4)))
    total = 0.0
    for i, (mi, vi) in enumerate(stats):
        for j, (mj, vj) in enumerate(stats):
            if i == j:
                continue
            v = (vi + vj) / 2
            db = np.sum((mi - mj) ** 2) / v / 8 + 0.5 * (np.log(v) - 0.5 * np.log(vi) - 0.5 * np.log(vj))
            total += np.exp(-db)
    return float(-total)


def ncti_terms_authors(X: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Wang et al.: PCA 64, shrinkage exp(-sum of the top-32 explained variances), scikit-learn LDA (eigen solver,
    that shrinkage): nuclear norm of the projection, mean true-class posterior, log sum of per-class nuclear norms."""
    from sklearn.decomposition import PCA
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    k = 64 if min(X.shape) >= 64 else min(X.shape) - 1
    pca = PCA(n_components=k)
    Z = pca.fit_transform(X)
    t = max(float(np.exp(-np.sum(pca.explained_variance_[:32]))), 1e-10)
    lda = LinearDiscriminantAnalysis(solver="eigen", shrinkage=t) if t > 1e-10 else LinearDiscriminantAnalysis()
    proj = lda.fit_transform(Z, y)
    P = lda.predict_proba(Z)
    proj = proj - proj.mean(0)
    seli = float(np.linalg.norm(proj, ord="nuc"))
    ncc = float(P[np.arange(len(y)), np.searchsorted(np.unique(y), y)].mean())
    vc = sum(np.linalg.norm(P[y == c], ord="nuc") for c in np.unique(y))
    return {"S_seli": seli, "S_ncc": ncc, "S_vc": float(np.log(vc))}


def etran_terms_authors(X: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Gholami et al. (released code): energy = mean of the lowest 0.5 % logsumexp; LDA term of an isotropic
    nearest-class-mean softmax."""
    from scipy.special import logsumexp, softmax

    E = np.sort(logsumexp(X, axis=1))
    energy = float(E[:max(1, int(np.floor(0.5 * len(E) / 100 + 1e-9)))].mean())
    classes = np.unique(y)
    mu = np.array([X[y == c].mean(0) for c in classes])
    pri = np.array([(y == c).mean() for c in classes])
    P = softmax(X @ mu.T - 0.5 * np.sum(mu * mu, 1) + np.log(pri), axis=1)
    return {"energy": energy, "lda": float(P[np.arange(len(y)), np.searchsorted(classes, y)].mean())}


def nleep_authors(X: np.ndarray, y: np.ndarray, max_iter: int = 10) -> float:
    """Li et al.: PCA keeping 80 % of the variance, a 5K-component full-covariance Gaussian mixture, then LEEP."""
    from sklearn.decomposition import PCA
    from sklearn.mixture import GaussianMixture

    Z = PCA(n_components=0.8).fit_transform(X)
    K = int(y.max() + 1)
    gmm = GaussianMixture(n_components=5 * K, covariance_type="full", random_state=0, max_iter=max_iter)
    theta = gmm.fit(Z).predict_proba(Z)
    joint = np.zeros((K, theta.shape[1]))
    for c in range(K):
        joint[c] = theta[y == c].sum(0)
    joint /= len(y)
    cond = joint / joint.sum(0, keepdims=True)
    return float(np.mean(np.log((theta @ cond.T)[np.arange(len(y)), y])))


def parc_authors(X: np.ndarray, y: np.ndarray) -> float:
    from scipy.stats import spearmanr
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    Z = PCA(n_components=min(32, X.shape[1], X.shape[0] - 1), svd_solver="randomized", random_state=1919,
            iterated_power=1).fit_transform(X)
    F = StandardScaler().fit_transform(Z)
    K = y.max() + 1
    iu = np.triu_indices(len(y), 1)
    labels_rdm = np.where(y[iu[0]] == y[iu[1]], 0.0, 1.0 + 1.0 / (K - 1))
    return float(100 * spearmanr((1 - np.corrcoef(F))[iu], labels_rdm)[0])


def _authors() -> dict[str, tuple[Callable[..., Any], Callable[..., Any]]]:
    """method -> (authors' re-implementation, nctransfer call)."""
    from bench_transferability import logme_reference, sfda_reference

    from nctransfer.transferability import METHODS

    def ours(name: str, **kw: Any) -> Callable[..., Any]:
        return lambda X, y: METHODS[name].fn(X, y, **kw)

    return {
        "logme": (logme_reference, ours("logme")),
        "hscore": (hscore_authors, ours("hscore")),
        "reg_hscore": (reg_hscore_authors, ours("reg_hscore")),
        "transrate": (transrate_authors, ours("transrate")),
        "gbc": (gbc_authors, ours("gbc")),
        "sfda": (sfda_reference, ours("sfda")),
        "ncti": (ncti_terms_authors, ours("ncti")),
        "etran": (etran_terms_authors, ours("etran")),
        "nleep": (nleep_authors, ours("nleep", max_iter=10)),
        "parc": (parc_authors, ours("parc")),
    }


def _value(v: Any) -> float:
    if isinstance(v, dict):  # pool-relative terms: compare the first term both report
        return float(v.get("S_ncc", v.get("lda", next(iter(v.values())))))
    return float(v)


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    t = time.perf_counter() - t0
    if t < 0.5:
        t0 = time.perf_counter()
        out = fn()
        t = min(t, time.perf_counter() - t0)
    return t, out


def features(n: int, n_taps: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    import torch

    from nctransfer.data import load_dataset
    from nctransfer.extract import extract
    from nctransfer.features import list_taps
    from nctransfer.models import load_model

    torch.set_num_threads(1)
    model = load_model("efficientnet_lite0")
    taps = list(list_taps(model))
    pick = [taps[int(round(i))] for i in np.linspace(0, len(taps) - 1, n_taps)]
    data = load_dataset("digits", "all", model=model, image_size=32, n=n)
    res = extract(model, data, pick, batch_size=64, store_features=True, cache_dir=ROOT / ".cache" / "bench_authors",
                  progress=False)
    return {t: (res[t].features.astype(np.float64), np.asarray(res[t].labels)) for t in pick}


def main(argv: list[str] | None = None) -> int:
    from threadpoolctl import threadpool_limits

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1500)
    ap.add_argument("--taps", type=int, default=6)
    ap.add_argument("--threads", type=int, default=1, help="BLAS threads (0: library default)")
    ap.add_argument("--methods", default=None, help="comma-separated subset")
    args = ap.parse_args(argv)
    feats = features(args.n, args.taps)
    print(f"features: EfficientNet-Lite0, {len(feats)} taps (d = "
          f"{', '.join(str(X.shape[1]) for X, _ in feats.values())}), N = {args.n} digits images")
    pairs = _authors()
    wanted = [m.strip() for m in args.methods.split(",")] if args.methods else list(pairs)
    limit = threadpool_limits(args.threads) if args.threads else None
    print(f"{'method':11s} {'authors s':>10s} {'nctransfer s':>12s} {'ratio':>6s} {'max rel diff':>12s}")
    try:
        for name in wanted:
            ref_fn, our_fn = pairs[name]
            t_ref = t_our = 0.0
            diff = 0.0
            for X, y in feats.values():
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    tr, vr = _timed(lambda: ref_fn(X, y))
                    to, vo = _timed(lambda: our_fn(X, y))
                t_ref += tr
                t_our += to
                a, b = _value(vr), _value(vo)
                diff = max(diff, abs(a - b) / max(abs(a), 1e-12))
            print(f"{name:11s} {t_ref:10.3f} {t_our:12.3f} {t_ref / t_our:6.2f} {diff:12.1e}", flush=True)
    finally:
        if limit is not None:
            limit.restore_original_limits()
    return 0


if __name__ == "__main__":
    sys.exit(main())
