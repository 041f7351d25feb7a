"""Reference values of every score other than LogME: hand-computed tables and naive float64 re-implementations
written from the papers / the authors' code (docs/methods.md#transferability)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from nctransfer import FeatureStats
from nctransfer.exceptions import NumericalWarning
from nctransfer.transferability import (
    etran,
    etran_combine,
    etran_terms,
    gbc,
    hscore,
    leep,
    ncc_accuracy,
    nce,
    ncti,
    ncti_combine,
    ncti_terms,
    neg_cdnv,
    neg_log_nc1,
    neg_nc1,
    neg_vci,
    nleep,
    parc,
    reg_hscore,
    sfda,
    transrate,
)
from nctransfer.transferability.sfda import shrunk_lda_posterior
from nctransfer.transferability._common import Workspace


def blobs(n=120, d=8, K=3, sep=2.0, seed=0, offset=0.0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % K
    X = offset + rng.normal(size=(n, d)) + sep * rng.normal(size=(K, d))[y]
    return X, y


# ----------------------------------------------------------------------------------------------- LEEP / NCE
def test_leep_hand_computed_table():
    theta = np.array([[0.8, 0.2], [0.6, 0.4], [0.3, 0.7], [0.1, 0.9]])
    y = [0, 0, 1, 1]
    # P(y, z) = [[1.4, 0.6], [0.4, 1.6]] / 4; P(z) = [0.45, 0.55]; P(y|z=0) = [7/9, 2/9], P(y|z=1) = [3/11, 8/11]
    eep = [0.8 * 7 / 9 + 0.2 * 3 / 11, 0.6 * 7 / 9 + 0.4 * 3 / 11, 0.3 * 2 / 9 + 0.7 * 8 / 11,
           0.1 * 2 / 9 + 0.9 * 8 / 11]
    assert leep(None, y, theta) == pytest.approx(np.mean(np.log(eep)), rel=1e-14)
    assert leep(np.zeros((4, 3)), y, theta) == pytest.approx(np.mean(np.log(eep)), rel=1e-14)
    assert leep(None, y, theta, log=False) == pytest.approx(np.mean(eep), rel=1e-14)
    # an unused source class (all-zero column) changes nothing
    assert leep(None, y, np.hstack([theta, np.zeros((4, 1))])) == pytest.approx(np.mean(np.log(eep)))


def test_nce_hand_computed_table():
    y = [0, 0, 1, 1, 1]
    z = [0, 1, 1, 1, 0]
    # joint counts /5: (0,0)=1, (0,1)=1, (1,1)=2, (1,0)=1; P(z=0)=2/5, P(z=1)=3/5
    expected = 0.2 * np.log(1 / 2) + 0.2 * np.log(1 / 3) + 0.4 * np.log(2 / 3) + 0.2 * np.log(1 / 2)
    assert nce(None, y, source_labels=z) == pytest.approx(expected, rel=1e-14)
    probs = np.eye(3)[[0, 1, 1, 1, 0]] * 0.8 + 0.2 / 3
    assert nce(None, y, probs) == pytest.approx(expected, rel=1e-14)
    assert nce(None, [0, 1, 0, 1], source_labels=[5, 5, 7, 7]) == pytest.approx(-np.log(2))
    assert nce(None, [0, 0, 1, 1], source_labels=[5, 5, 7, 7]) == 0.0


# ------------------------------------------------------------------------------------------------------ GBC
def test_gbc_identical_and_far_apart_classes():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(30, 5))
    X = np.vstack([base, base, base])
    y = np.repeat([0, 1, 2], 30)
    # identical classes: D_B = 0, each of the K(K-1) = 6 ordered pairs contributes -1
    assert gbc(X, y, n_components=None) == pytest.approx(-6.0, abs=1e-12)
    assert gbc(X, y, n_components=4, gaussian="diagonal") == pytest.approx(-6.0, abs=1e-12)
    far = X + 1e3 * np.eye(5)[:3][y]
    assert -1e-12 < gbc(far, y, n_components=None) <= 0.0
    assert -1e-12 < gbc(far, y, n_components=4, gaussian="diagonal") <= 0.0


def test_gbc_hand_computed_bhattacharyya():
    # 1-D classes: means 0 and 2, population variances 1 and 4
    X = np.array([-1.0, 1.0, 0.0, 4.0]).reshape(-1, 1)
    y = [0, 0, 1, 1]
    s = (1.0 + 4.0) / 2
    db = 4.0 / s / 8 + 0.5 * (np.log(s) - 0.5 * np.log(1.0) - 0.5 * np.log(4.0))
    assert gbc(X, y, n_components=None) == pytest.approx(-2 * np.exp(-db), rel=1e-12)
    # 2-D diagonal: per-dimension variances; spherical: one averaged variance per class (the authors' code
    # then adds the log of that single scalar, not d times it)
    X2 = np.array([[-1.0, 0.0], [1.0, 0.0], [2.0, 3.0], [2.0, 5.0]])
    mu0, mu1 = np.array([0.0, 0.0]), np.array([2.0, 4.0])
    v0, v1 = np.array([1.0, 1e-4]), np.array([1e-4, 1.0])  # zero variances floored at 1e-4
    sd = (v0 + v1) / 2
    db_diag = np.sum((mu0 - mu1) ** 2 / sd) / 8 + 0.5 * (np.log(sd).sum() - 0.5 * np.log(v0).sum()
                                                         - 0.5 * np.log(v1).sum())
    assert gbc(X2, y, n_components=None, gaussian="diagonal") == pytest.approx(-2 * np.exp(-db_diag), rel=1e-12)
    s0, s1 = v0.mean(), v1.mean()
    ss = (s0 + s1) / 2
    db_sph = np.sum((mu0 - mu1) ** 2) / ss / 8 + 0.5 * (np.log(ss) - 0.5 * np.log(s0) - 0.5 * np.log(s1))
    assert gbc(X2, y, n_components=None) == pytest.approx(-2 * np.exp(-db_sph), rel=1e-12)


# ----------------------------------------------------------------------------------------- H-scores
def hscore_reference(X, y):
    """The authors' formula with numpy: tr(pinv(cov(X)) cov(g)), both with 1/(N-1)."""
    cov_f = np.cov(X, rowvar=False)
    g = np.zeros_like(X)
    for k in np.unique(y):
        g[y == k] = X[y == k].mean(0)
    return np.trace(np.linalg.pinv(cov_f, rcond=1e-12) @ np.cov(g, rowvar=False))


@pytest.mark.parametrize("n,d", [(150, 6), (20, 40)])
def test_hscore_closed_form_and_stats(n, d):
    X, y = blobs(n, d, 4, offset=100.0)
    y = np.asarray(y)
    expected = hscore_reference(X, y)
    assert hscore(X, y) == pytest.approx(expected, rel=1e-8)
    stats = FeatureStats().update(X[: n // 3], y[: n // 3]) + FeatureStats().update(X[n // 3:], y[n // 3:])
    assert hscore(stats) == pytest.approx(expected, rel=1e-7)
    if n < d:  # d >= N - 1: Sigma_T's column space contains every between-class direction
        assert hscore(X, y) == pytest.approx(3.0, rel=1e-9)


def test_hscore_vci_cross_check():
    """VCI = 1 - H / min(d, K-1): two independently written functions (metrics.vci and hscore)."""
    from nctransfer.metrics import vci

    for n, d, K in [(400, 5, 3), (300, 12, 6), (600, 3, 8)]:
        X, y = blobs(n, d, K, sep=1.0, seed=n)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NumericalWarning)
            v = vci(X, y)
        assert 1.0 - hscore(X, y) / min(d, K - 1) == pytest.approx(v, abs=1e-10)
        assert neg_vci(X, y) == pytest.approx(-v, abs=1e-12)


def reg_hscore_reference(X, y):
    """The authors' code: centred features, sklearn LedoitWolf, cov(g) with 1/(N-1), pinv."""
    from sklearn.covariance import LedoitWolf

    f = X - X.mean(0)
    lw = LedoitWolf(assume_centered=False).fit(f)
    g = np.zeros_like(f)
    for k in np.unique(y):
        g[y == k] = f[y == k].mean(0)
    return np.trace(np.linalg.pinv(lw.covariance_, rcond=1e-15) @ ((1 - lw.shrinkage_) * np.cov(g, rowvar=False)))


@pytest.mark.parametrize("n,d", [(200, 10), (25, 60)])
def test_reg_hscore_matches_reference(n, d):
    X, y = blobs(n, d, 5, seed=3)
    assert reg_hscore(X, np.asarray(y)) == pytest.approx(reg_hscore_reference(X, np.asarray(y)), rel=1e-8)


# ----------------------------------------------------------------------------------------------- TransRate
def transrate_reference(X, y, eps=1e-4):
    def rate(Z):
        n, d = Z.shape
        return 0.5 * np.linalg.slogdet(np.eye(d) + Z.T @ Z / (n * eps))[1]

    Z = X - X.mean(0)
    K = len(np.unique(y))
    return rate(Z) - sum(rate(Z[y == k]) for k in np.unique(y)) / K


@pytest.mark.parametrize("n,d", [(90, 5), (40, 25), (12, 30)])
def test_transrate_matches_reference(n, d):
    X, y = blobs(n, d, 3, seed=4)  # class sizes 30 > d and 30 < d: both Gram domains
    y = np.asarray(y)
    assert transrate(X, y) == pytest.approx(transrate_reference(X, y), rel=1e-10)
    assert transrate(X, y, eps=1e-2) == pytest.approx(transrate_reference(X, y, 1e-2), rel=1e-10)


# ---------------------------------------------------------------------------------------------------- SFDA
def sfda_reference(X, y):
    """The authors' SFDA_Score: per-class covariances, iterative_A, eigh(Sb, Sw), ConfMix in place (on a copy)."""
    from scipy import linalg

    X = X.copy()

    def cov(Z, shrinkage=-1.0):
        c = np.cov(Z.T, bias=1)
        if shrinkage < 0:
            return c
        mu = np.trace(c) / c.shape[0]
        c = (1 - shrinkage) * c
        c.flat[:: c.shape[0] + 1] += shrinkage * mu
        return c

    def iterative_a(A, k=3):
        x = A.sum(axis=1)
        for _ in range(k):
            t = A @ x
            yy = t / np.linalg.norm(t)
            t = A @ yy
            x = t / np.linalg.norm(t)
        return x @ A @ yy

    def fit_proba(Z, lam=None):
        classes = np.unique(y)
        priors = np.bincount(y) / len(y)
        means = np.array([Z[y == k].mean(0) for k in classes])
        Sw = sum(priors[k] * cov(Z[y == k]) for k in classes)
        if lam is None:
            lam = max(np.exp(-5 * iterative_a(Sw)), 1e-10)
        St = cov(Z, lam)
        d = Sw.shape[0]
        Sw_s = (1 - lam) * Sw
        Sw_s.flat[:: d + 1] += lam * np.trace(Sw) / d
        evals, evecs = linalg.eigh(St - Sw_s, Sw_s)
        evecs = evecs[:, np.argsort(evals)[::-1]]
        coef = means @ evecs @ evecs.T
        inter = -0.5 * np.diag(means @ coef.T) + np.log(priors)
        s = Z @ coef.T + inter
        s = np.exp(s - s.max(1, keepdims=True))
        return s / s.sum(1, keepdims=True), lam, means

    prob, lam, means = fit_proba(X)
    prob = np.exp(prob) / np.exp(prob).sum(1, keepdims=True)
    K = len(means)
    others = np.array([(means.sum(0) - means[k]) / (K - 1) for k in range(K)])
    for k in range(K):
        idx = np.where(y == k)[0]
        p = prob[idx, k][:, None]
        X[idx] = p * X[idx] + (1 - p) * others[k]
    prob2, _, _ = fit_proba(X, lam)
    return prob2[np.arange(len(y)), y].mean(), lam


@pytest.mark.parametrize("scale", [0.05, 1.0])
def test_sfda_matches_authors_recipe_and_keeps_input(scale):
    X, y = blobs(150, 6, 3, sep=1.0, seed=5)
    X = X * scale  # small features: lambda well above its floor; unit features: lambda at 1e-10
    y = np.asarray(y)
    X0 = X.copy()
    det = sfda(X, y, return_details=True)
    ref, lam = sfda_reference(X, y)
    assert det.shrinkage == pytest.approx(lam, rel=1e-12)
    assert det.score == pytest.approx(ref, rel=1e-9)
    np.testing.assert_array_equal(X, X0)  # the caller's array is not modified
    assert 0.0 <= det.score <= 1.0


def test_sfda_posterior_equals_sklearn_lda():
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    X, y = blobs(200, 7, 4, sep=0.7, seed=6, offset=50.0)
    ws = Workspace(X * 0.1, y, "sfda")
    prob, lam = shrunk_lda_posterior(ws)
    assert 1e-10 < lam < 1.0
    lda = LinearDiscriminantAnalysis(solver="lsqr", shrinkage=lam).fit(X * 0.1, y)
    np.testing.assert_allclose(prob, lda.predict_proba(X * 0.1), rtol=1e-8, atol=1e-12)
    prob_fixed, _ = shrunk_lda_posterior(ws, shrinkage=0.3)
    lda = LinearDiscriminantAnalysis(solver="lsqr", shrinkage=0.3).fit(X * 0.1, y)
    np.testing.assert_allclose(prob_fixed, lda.predict_proba(X * 0.1), rtol=1e-8, atol=1e-12)


# ---------------------------------------------------------------------------------------------------- NCTI
def ncti_terms_reference(X, y, n_components):
    """The authors' NCTI code with scikit-learn (exact PCA instead of their unseeded randomized one)."""
    from sklearn.decomposition import PCA
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    C = len(np.unique(y))
    pca = PCA(n_components=n_components, svd_solver="full")
    Z = pca.fit_transform(X)
    temp = max(np.exp(-pca.explained_variance_[:32].sum()), 1e-10)
    if temp == 1e-10:
        clf = LinearDiscriminantAnalysis(solver="svd")
    else:
        clf = LinearDiscriminantAnalysis(solver="eigen", shrinkage=float(temp))
    low = clf.fit_transform(Z, y)
    low = low - low.mean(0, keepdims=True)
    seli = np.linalg.norm(low, ord="nuc")
    P = clf.predict_proba(Z)
    ncc = P[np.arange(len(y)), y].mean()
    vc = np.log(sum(np.linalg.norm(P[y == c], ord="nuc") for c in range(C)))
    return {"S_seli": seli, "S_ncc": ncc, "S_vc": vc, "shrinkage": temp}


@pytest.mark.parametrize("scale,K", [(3.0, 3), (0.05, 3), (0.05, 12)])
def test_ncti_terms_match_authors_code(scale, K):
    """Both branches: plain LDA (large explained variance: shrinkage at its floor) and shrinkage LDA."""
    X, y = blobs(240, 10, K, sep=1.0, seed=7)
    X = X * scale
    y = np.asarray(y)
    with pytest.warns(NumericalWarning, match="using 9 dims"):
        mine = ncti_terms(X, y)
    ref = ncti_terms_reference(X, y, 9)
    assert (mine["shrinkage"] == 1e-10) == (scale == 3.0)
    assert mine["shrinkage"] == pytest.approx(ref["shrinkage"], rel=1e-10)
    for t in ("S_seli", "S_ncc", "S_vc"):
        assert mine[t] == pytest.approx(ref[t], rel=1e-7), t


def test_ncti_combination_three_model_pool_by_hand():
    terms = {"a": {"S_seli": 10.0, "S_ncc": 0.9, "S_vc": 2.0},
             "b": {"S_seli": 5.0, "S_ncc": 0.5, "S_vc": 3.0},
             "c": {"S_seli": 0.0, "S_ncc": 0.7, "S_vc": 2.5}}
    df = ncti_combine(terms)
    # seli: [1, .5, 0]; ncc: [1, 0, .5]; vc: [0, 1, .5] -> ncc + seli - vc
    np.testing.assert_allclose(df["seli"], [1.0, 0.5, 0.0])
    np.testing.assert_allclose(df["ncc"], [1.0, 0.0, 0.5])
    np.testing.assert_allclose(df["vc"], [0.0, 1.0, 0.5])
    np.testing.assert_allclose(df["ncti"], [2.0, -0.5, 0.0], atol=1e-12)
    # a term equal across the pool contributes 0
    same = {k: dict(v, S_vc=1.0) for k, v in terms.items()}
    np.testing.assert_allclose(ncti_combine(same)["ncti"], [2.0, 0.5, 0.5], atol=1e-12)


def test_ncti_pool_on_features_by_hand():
    """Three models: terms from the reference implementation, combined by hand, equal ncti(pool)."""
    pool, refs = {}, {}
    y = np.arange(300) % 3
    rng = np.random.default_rng(8)
    means = rng.normal(size=(3, 70))
    for name, sep in [("weak", 0.3), ("mid", 0.8), ("strong", 2.0)]:
        X = rng.normal(size=(300, 70)) + sep * means[y]
        pool[name] = (X, y)
        refs[name] = ncti_terms_reference(X, y, 64)
    df = ncti(pool)
    for name in pool:
        for t in ("S_seli", "S_ncc", "S_vc"):
            assert df.loc[name, t] == pytest.approx(refs[name][t], rel=1e-7)

    def mm(t):
        v = np.array([refs[n][t] for n in pool])
        return (v - v.min()) / (v.max() - v.min())

    np.testing.assert_allclose(df["ncti"], mm("S_ncc") + mm("S_seli") - mm("S_vc"), atol=1e-9)
    assert df["ncti"].idxmax() == "strong"


# --------------------------------------------------------------------------------------------------- ETran
def test_etran_terms_and_combination():
    from scipy.special import logsumexp

    X, y = blobs(400, 6, 4, seed=9)
    y = np.asarray(y)
    t = etran_terms(X, y, lda_covariance="shrunk")  # the paper's variant (the default is the authors' code's)
    E = np.sort(logsumexp(X, axis=1))
    assert t["energy"] == pytest.approx(E[:2].mean())  # 0.5% of 400 = 2 lowest
    assert etran_terms(X, y, tail="top")["energy"] == pytest.approx(E[-2:].mean())
    assert etran_terms(X[:50], y[:50])["energy"] == pytest.approx(np.sort(logsumexp(X[:50], axis=1))[0])
    prob, _ = shrunk_lda_posterior(Workspace(X, y, "etran"))
    assert t["lda"] == pytest.approx(prob[np.arange(400), y].mean())
    # the authors' code's effective LDA: softmax(x . mu_k - |mu_k|^2 / 2 + log pi_k)
    means = np.array([X[y == k].mean(0) for k in range(4)])
    s = X @ means.T - 0.5 * (means ** 2).sum(1) + np.log(np.bincount(y) / 400)
    p = np.exp(s - s.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    assert etran_terms(X, y, lda_covariance="identity")["lda"] == pytest.approx(p[np.arange(400), y].mean())
    df = etran_combine({"a": {"energy": 1.0, "lda": 0.2}, "b": {"energy": 3.0, "lda": 0.6},
                        "c": {"energy": 2.0, "lda": 1.0}})
    np.testing.assert_allclose(df["etran"], [0.0, 0.15 + 0.85 * 0.5, 0.15 * 0.5 + 0.85])
    pool = etran({"a": (X, y), "b": (X * 2, y)})
    assert set(pool.columns) >= {"energy", "lda", "etran"}


# ---------------------------------------------------------------------------------------------------- PARC
def parc_reference(X, y, n_components):
    from scipy.stats import spearmanr
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    f = StandardScaler().fit_transform(PCA(n_components=n_components, svd_solver="full").fit_transform(X))
    labels = np.eye(len(np.unique(y)))[y]
    iu = np.triu_indices(len(y), 1)
    return spearmanr((1 - np.corrcoef(f))[iu], (1 - np.corrcoef(labels))[iu])[0] * 100


def test_parc_matches_reference_and_blocked_path():
    X, y = blobs(150, 40, 4, sep=0.6, seed=10)
    y = np.asarray(y)
    ref = parc_reference(X, y, 32)
    assert parc(X, y) == pytest.approx(ref, rel=1e-9)
    assert parc(X, y, exact_pairs=0) == pytest.approx(ref, rel=1e-9)  # rank-sum path, no ties
    sub = parc(X, y, max_samples=60, seed=1)
    assert np.isfinite(sub) and sub == parc(X, y, max_samples=60, seed=1)


# --------------------------------------------------------------------------------------------------- NLEEP
def test_nleep_is_leep_on_mixture_posteriors():
    from sklearn.decomposition import PCA
    from sklearn.mixture import GaussianMixture

    X, y = blobs(120, 6, 3, sep=3.0, seed=11)
    y = np.asarray(y)
    value = nleep(X, y, seed=0)
    assert value == nleep(X, y, seed=0) and value <= 0
    # same recipe by hand: PCA(0.8) + GMM(15, full, kmeans) on canonically ordered rows, then LEEP
    Z = PCA(n_components=0.8, svd_solver="full").fit_transform(X)
    Z = Z * np.sign(Z[np.argmax(np.abs(Z), axis=0), np.arange(Z.shape[1])])  # sign convention is irrelevant
    gm = GaussianMixture(15, covariance_type="full", init_params="kmeans", random_state=0)
    order = np.lexsort(Z.T[::-1])
    theta = gm.fit(Z[order]).predict_proba(Z)
    hand = leep(None, y, theta)
    assert value == pytest.approx(hand, abs=0.05)  # sign conventions of the components may change the init


def test_nleep_fallbacks_warn():
    rng = np.random.default_rng(12)
    y = np.arange(12) % 3
    X = rng.normal(size=(12, 4)) + 3 * np.eye(4)[y]
    with pytest.warns(NumericalWarning, match="exceed the 12 samples"):
        assert np.isfinite(nleep(X, y))  # 15 components > 12 samples
    dup = np.repeat(X[:6], 4, axis=0)  # 6 distinct points, 24 rows
    ydup = np.arange(24) % 3
    with pytest.warns(NumericalWarning):
        assert np.isfinite(nleep(dup, ydup, reg_covar=1e-300))


# ------------------------------------------------------------------------------------------ collapse-based
def test_collapse_scores_are_negated_metrics():
    from nctransfer import metrics

    X, y = blobs(300, 5, 3, seed=13)
    stats = FeatureStats().update(X, y)
    assert neg_nc1(X, y) == pytest.approx(-metrics.nc1(X, y))
    assert neg_nc1(stats) == pytest.approx(-metrics.nc1(X, y), rel=1e-9)
    assert neg_log_nc1(X, y) == pytest.approx(-np.log(metrics.nc1(X, y)))
    assert neg_cdnv(stats) == pytest.approx(-metrics.cdnv(X, y), rel=1e-9)
    assert ncc_accuracy(X, y) == pytest.approx(metrics.ncc_accuracy(X, y))
