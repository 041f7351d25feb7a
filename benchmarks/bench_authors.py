"""Every transferability score beside a straightforward re-implementation of its authors' released code (the
formulas and the library calls that code makes, written here, not copied), timed in one run on the same real
features, with the relative difference of the two values.

    python benchmarks/bench_authors.py                   # 24 EfficientNet-Lite taps, N = 3 000, 1 and default threads
    python benchmarks/bench_authors.py --threads 1 --methods gbc,ncti,hscore
    python benchmarks/bench_transferability.py --authors ...   # the same run (that script delegates here)

Features: ``--taps`` taps split evenly over EfficientNet-Lite0/1/2 (evenly spaced in each model, widths 16-1 280) on
``--n`` class-balanced Fashion-MNIST training images at 32 px (digits when Fashion-MNIST is not installed),
extracted once and cached under ``.cache/bench_authors``. Each method is timed on every tap (best of two when fast)
with each ``--threads`` setting (1: one BLAS thread; 0: the library default). The ratio is authors' seconds /
nctransfer seconds, summed over the taps; the relative difference is the largest over the taps (and over NCTI's
and ETran's terms). NLEEP runs 10 EM iterations in both implementations (the same scikit-learn mixture).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from scipy import linalg
from scipy.special import logsumexp, softmax
from scipy.stats import spearmanr
from sklearn.covariance import LedoitWolf
from sklearn.decomposition import PCA
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.mixture import GaussianMixture
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from nctransfer.data import load_dataset
from nctransfer.extract import extract
from nctransfer.features import list_taps
from nctransfer.models import load_model
from nctransfer.transferability import METHODS

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")


# ----------------------------------------------------------------------------------- authors' code, re-written
def logme_fixed_point(sigma: np.ndarray, x2: np.ndarray, res_x2: float, n: int, d: int) -> float:
    """The LogME reference code's evidence of one target: its alpha/beta fixed point (at most 11 steps, relative
    tolerance 1e-3) on the squared singular values ``sigma`` and the target's squared projections ``x2``."""
    alpha = beta = 1.0
    for _ in range(11):
        tt = alpha / beta
        gamma = np.sum(sigma / (sigma + tt))
        m2 = np.sum(sigma * x2 / (tt + sigma) ** 2)
        res2 = np.sum(x2 / (1 + sigma / tt) ** 2) + res_x2
        alpha, beta = gamma / (m2 + 1e-5), (n - gamma) / (res2 + 1e-5)
        if abs(alpha / beta - tt) / tt <= 1e-3:
            break
    return float((d / 2 * np.log(alpha) + n / 2 * np.log(beta) - 0.5 * np.sum(np.log(alpha + beta * sigma))
                  - beta / 2 * res2 - alpha / 2 * m2 - n / 2 * np.log(2 * np.pi)) / n)


def logme_reference(X: np.ndarray, y: np.ndarray) -> float:
    """The LogME reference code's structure: truncated SVD via svd(X^T X), then a Python loop over classes."""
    n, d = X.shape
    u_, s, vh = np.linalg.svd(X.T @ X)
    s = np.sqrt(s)
    k = int(np.sum(s > 1e-10))
    s, vh = s[:k], vh[:k]
    u = (X @ vh.T) / s
    sigma = s ** 2
    evs = []
    for c in range(int(y.max()) + 1):
        t = (y == c).astype(np.float64)
        x2 = (u.T @ t) ** 2
        evs.append(logme_fixed_point(sigma, x2, t @ t - x2.sum(), n, d))
    return float(np.mean(evs))


def sfda_reference(X: np.ndarray, y: np.ndarray) -> float:
    """The authors' SFDA: per-class covariances, iterative_A, scipy.linalg.eigh(S_B, S_W), ConfMix, twice."""
    X = X.copy()
    classes = np.unique(y)
    priors = np.bincount(y) / len(y)

    def cov(Z: np.ndarray, shrinkage: float = -1.0) -> np.ndarray:
        c = np.cov(Z.T, bias=1)
        if shrinkage < 0:
            return c
        mu = np.trace(c) / c.shape[0]
        c = (1 - shrinkage) * c
        c.flat[:: c.shape[0] + 1] += shrinkage * mu
        return c

    def iterative_a(A: np.ndarray) -> float:
        x = A.sum(axis=1)
        for _ in range(3):
            t = A @ x
            yy = t / np.linalg.norm(t)
            t = A @ yy
            x = t / np.linalg.norm(t)
        return float(x @ A @ yy)

    def fit_proba(Z: np.ndarray, lam: float | None) -> tuple[np.ndarray, float, np.ndarray]:
        means = np.array([Z[y == k].mean(0) for k in classes])
        Sw = sum(priors[i] * cov(Z[y == k]) for i, k in enumerate(classes))
        if lam is None:
            lam = max(np.exp(-5 * iterative_a(Sw)), 1e-10)
        St = cov(Z, lam)
        dd = Sw.shape[0]
        Sw_s = (1 - lam) * Sw
        Sw_s.flat[:: dd + 1] += lam * np.trace(Sw) / dd
        evals, evecs = linalg.eigh(St - Sw_s, Sw_s)
        evecs = evecs[:, np.argsort(evals)[::-1]]
        coef = means @ evecs @ evecs.T
        inter = -0.5 * np.diag(means @ coef.T) + np.log(priors)
        s = Z @ coef.T + inter
        s = np.exp(s - s.max(1, keepdims=True))
        return s / s.sum(1, keepdims=True), lam, means

    prob, lam, means = fit_proba(X, None)
    prob = np.exp(prob) / np.exp(prob).sum(1, keepdims=True)
    Kc = len(means)
    others = (means.sum(0) - means) / (Kc - 1)
    for i in range(Kc):
        idx = np.where(y == classes[i])[0]
        p = prob[idx, i][:, None]
        X[idx] = p * X[idx] + (1 - p) * others[i]
    prob2, _, _ = fit_proba(X, lam)
    return float(prob2[np.arange(len(y)), np.searchsorted(classes, y)].mean())


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


def gbc_authors(X: np.ndarray, y: np.ndarray, svd_solver: str = "full") -> float:
    """Pandy et al.: PCA 64, per-class spherical Gaussians (mean, averaged per-dim variance), Bhattacharyya pairs.

    The released code reduces the features with scikit-learn's ``PCA(n_components=64, svd_solver='full')`` (an exact
    SVD of the centred features; the solver is its PCA helper's default) and computes in float32 TensorFlow; here
    float64 like nctransfer. ``svd_solver="auto"`` (randomized at these sizes) is the faster, approximate variant the
    previous version of this benchmark used."""
    Z = PCA(n_components=min(64, X.shape[1], X.shape[0] - 1), svd_solver=svd_solver).fit_transform(X)
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
    E = np.sort(logsumexp(X, axis=1))
    energy = float(E[:max(1, int(np.floor(0.5 * len(E) / 100 + 1e-9)))].mean())
    classes = np.unique(y)
    mu = np.array([X[y == c].mean(0) for c in classes])
    pri = np.array([(y == c).mean() for c in classes])
    P = softmax(X @ mu.T - 0.5 * np.sum(mu * mu, 1) + np.log(pri), axis=1)
    return {"energy": energy, "lda": float(P[np.arange(len(y)), np.searchsorted(classes, y)].mean())}


def nleep_authors(X: np.ndarray, y: np.ndarray, max_iter: int = 10) -> float:
    """Li et al.: PCA keeping 80 % of the variance, a 5K-component full-covariance Gaussian mixture, then LEEP."""
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
    Z = PCA(n_components=min(32, X.shape[1], X.shape[0] - 1), svd_solver="randomized", random_state=1919,
            iterated_power=1).fit_transform(X)
    F = StandardScaler().fit_transform(Z)
    K = y.max() + 1
    iu = np.triu_indices(len(y), 1)
    labels_rdm = np.where(y[iu[0]] == y[iu[1]], 0.0, 1.0 + 1.0 / (K - 1))
    return float(100 * spearmanr((1 - np.corrcoef(F))[iu], labels_rdm)[0])


def _authors() -> dict[str, tuple[Callable[..., Any], Callable[..., Any]]]:
    """method -> (authors' re-implementation, nctransfer call)."""
    def ours(name: str, **kw: Any) -> Callable[..., Any]:
        return lambda X, y: METHODS[name].fn(X, y, **kw)

    return {
        "logme": (logme_reference, ours("logme")),
        "hscore": (hscore_authors, ours("hscore")),
        "reg_hscore": (reg_hscore_authors, ours("reg_hscore")),
        "transrate": (transrate_authors, ours("transrate")),
        "gbc": (gbc_authors, ours("gbc")),
        "gbc_auto_pca": (lambda X, y: gbc_authors(X, y, svd_solver="auto"), ours("gbc")),
        "sfda": (sfda_reference, ours("sfda")),
        "ncti": (ncti_terms_authors, ours("ncti")),
        "etran": (etran_terms_authors, ours("etran")),
        "nleep": (nleep_authors, ours("nleep", max_iter=10)),
        "parc": (parc_authors, ours("parc")),
    }


def _values(v: Any) -> dict[str, float]:
    """Comparable values: the score, or every term of a pool-relative score."""
    if isinstance(v, dict):
        return {k: float(x) for k, x in v.items() if k in ("S_seli", "S_ncc", "S_vc", "energy", "lda")}
    return {"value": float(v)}


def _rel_diff(a: dict[str, float], b: dict[str, float]) -> float:
    return max(abs(a[k] - b[k]) / max(abs(a[k]), 1e-12) for k in a if k in b)


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    t = time.perf_counter() - t0
    if t < 0.5:
        t0 = time.perf_counter()
        out = fn()
        t = min(t, time.perf_counter() - t0)
    return t, out


def pick_taps(taps: list[str], k: int) -> list[str]:
    """``k`` taps evenly spaced over ``taps`` (first and last included; all of them when ``k >= len(taps)``)."""
    if k >= len(taps):
        return list(taps)
    return [taps[int(round(i))] for i in np.linspace(0, len(taps) - 1, k)]


def features(n: int, n_taps: int, models: list[str] | None = None, dataset: str = "fashion-mnist"
             ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{model/tap: (X float64 [N, d], y [N])}``: ``n_taps`` taps split evenly over ``models`` (evenly spaced in
    each model, the last one its penultimate layer) on ``n`` class-balanced ``dataset`` training images at 32 px
    (digits when Fashion-MNIST is not installed); extracted once and cached under ``.cache/bench_authors``."""
    torch.set_num_threads(1)
    models = list(models or MODELS)
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    per_model = [n_taps // len(models) + (i < n_taps % len(models)) for i in range(len(models))]
    for name, k in zip(models, per_model):
        if k == 0:
            continue
        model = load_model(name)
        pick = pick_taps(list(list_taps(model)), k)
        try:
            data = load_dataset(dataset, "train", model=model, image_size=32, n=n)
        except Exception as exc:  # noqa: BLE001 - the Debian package may be missing: fall back to digits
            print(f"{dataset} unavailable ({exc}); using digits")
            dataset = "digits"
            data = load_dataset("digits", "all", model=model, image_size=32, n=n)
        res = extract(model, data, pick, batch_size=64, store_features=True,
                      cache_dir=ROOT / ".cache" / "bench_authors", progress=False)
        for t in pick:
            out[f"{name.replace('efficientnet_', '')}/{t}"] = (res[t].features.astype(np.float64),
                                                              np.asarray(res[t].labels))
    return out


def run(feats: dict[str, tuple[np.ndarray, np.ndarray]], methods: list[str], threads: int
        ) -> dict[str, dict[str, float]]:
    """Time every method on every tap with ``threads`` BLAS threads (0: the library default); seconds summed over
    the taps and the largest relative difference of the values (every term of NCTI and ETran)."""
    pairs = _authors()
    limit = threadpool_limits(threads) if threads else None
    rows: dict[str, dict[str, float]] = {}
    label = f"{threads} BLAS thread{'s' if threads != 1 else ''}" if threads else "default BLAS threads"
    print(f"\n{label}:\n{'method':11s} {'authors s':>10s} {'nctransfer s':>12s} {'ratio':>6s} "
          f"{'max rel diff':>12s}", flush=True)
    try:
        for name in methods:
            ref_fn, our_fn = pairs[name]
            t_ref = t_our = diff = 0.0
            for X, y in feats.values():
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    tr, vr = _timed(lambda: ref_fn(X, y))
                    to, vo = _timed(lambda: our_fn(X, y))
                t_ref += tr
                t_our += to
                diff = max(diff, _rel_diff(_values(vr), _values(vo)))
            rows[name] = {"authors_s": t_ref, "nctransfer_s": t_our, "ratio": t_ref / t_our, "max_rel_diff": diff}
            print(f"{name:11s} {t_ref:10.3f} {t_our:12.3f} {t_ref / t_our:6.2f} {diff:12.1e}", flush=True)
    finally:
        if limit is not None:
            limit.restore_original_limits()
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=3000, help="target images (class-balanced; default 3000)")
    ap.add_argument("--taps", type=int, default=24, help="taps in all, split evenly over --models (default 24)")
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated bundled models")
    ap.add_argument("--dataset", default="fashion-mnist", help="target dataset (digits when it is missing)")
    ap.add_argument("--threads", default="1,0",
                    help="comma-separated BLAS thread settings, each a full run (0: the library default)")
    ap.add_argument("--methods", default=None, help="comma-separated subset (default: every score)")
    args = ap.parse_args(argv)
    feats = features(args.n, args.taps, [m.strip() for m in args.models.split(",")], args.dataset)
    dims = sorted({X.shape[1] for X, _ in feats.values()})
    n_used = next(iter(feats.values()))[0].shape[0]
    print(f"features: {len(feats)} taps of {args.models} (d = {dims[0]}-{dims[-1]}), N = {n_used}")
    methods = [m.strip() for m in args.methods.split(",")] if args.methods else list(_authors())
    with warnings.catch_warnings():  # warm-up: imports and first-call initialisation are nobody's time
        warnings.simplefilter("ignore")
        X0, y0 = next(iter(feats.values()))
        for name in methods:
            for fn in _authors()[name]:
                fn(X0[::10], y0[::10])
    for threads in (int(t) for t in args.threads.split(",")):
        run(feats, methods, threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
