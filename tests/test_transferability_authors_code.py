"""Defaults that reproduce the authors' released code, and PED, on tiny hand-computable inputs.

Each test states the released code's formula it checks (written from the formulas, not copied code). SFDA, NCTI
and GBC are checked against their authors' formulas in ``test_transferability_scores.py``.
"""

import math

import numpy as np
import pytest

from nctransfer.transferability import etran_terms, nleep, parc, ped, ped_motion, score, sfda


def _sigmoid(t):
    return 1.0 / (1.0 + math.exp(-t))


# ---------------------------------------------------------------------------------------------------- ETran
def test_etran_default_lda_is_the_codes_isotropic_nearest_mean_softmax():
    # released code's LDA term: p(k|x) = softmax_k(x . mu_k - |mu_k|^2 / 2 + log pi_k), score = mean p(y_i|x_i).
    # 1-D, classes {0, 1} and {4, 5}: mu = (0.5, 4.5), equal priors. Logit difference (true - other) is
    # 4 |x - 2.5|, i.e. 10 for x in {0, 5} and 6 for x in {1, 4}: lda = (sigmoid(10) + sigmoid(6)) / 2.
    X = np.array([[0.0], [1.0], [4.0], [5.0]])
    y = np.array([0, 0, 1, 1])
    t = etran_terms(X, y)
    assert t["lda"] == pytest.approx((_sigmoid(10) + _sigmoid(6)) / 2, rel=1e-12)
    # energy: logsumexp over one dimension is x itself; 0.5% of 4 samples -> the lowest one, 0
    assert t["energy"] == pytest.approx(0.0, abs=1e-12)
    assert etran_terms(X, y, lda_covariance="identity")["lda"] == t["lda"]
    # the paper's variant divides by the within-class variance 1/4: logit differences 40 and 24
    assert etran_terms(X, y, lda_covariance="shrunk")["lda"] == pytest.approx((_sigmoid(40) + _sigmoid(24)) / 2)


# ----------------------------------------------------------------------------------------------------- PARC
def _parc_code_formula(X, y, k, solver):
    """PARC as the authors' code computes it: PCA(k) (randomized, one power iteration, random state 1919),
    per-dimension standardisation, then 100 * Spearman(upper triangle of 1 - corr(rows of features),
    upper triangle of 1 - corr(rows of one-hot labels)). The label dissimilarity is written exactly (0 within a
    class, 1 + 1/(K-1) across): numpy's corrcoef of one-hot rows leaves rounding noise (2e-16 instead of 0 for
    some classes), which Spearman's ranking would turn into a spurious order among the within-class pairs."""
    from scipy.stats import spearmanr
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    if solver == "randomized":
        Z = PCA(n_components=k, svd_solver="randomized", random_state=1919, iterated_power=1).fit_transform(X)
    else:
        Z = PCA(n_components=k, svd_solver="full").fit_transform(X)
    F = StandardScaler().fit_transform(Z)
    K = y.max() + 1
    iu = np.triu_indices(len(y), 1)
    labels_rdm = np.where(y[iu[0]] == y[iu[1]], 0.0, 1.0 + 1.0 / (K - 1))
    return 100 * spearmanr((1 - np.corrcoef(F))[iu], labels_rdm)[0]


def test_parc_default_is_the_codes_randomized_pca():
    rng = np.random.default_rng(3)
    y = np.repeat(np.arange(3), 20)
    # a slowly decaying spectrum over 60 dims: one power iteration cannot find the exact top-8 subspace
    X = rng.normal(size=(60, 60)) * np.linspace(2.0, 1.0, 60) + 1.2 * np.eye(60)[y * 7]
    code = _parc_code_formula(X, y, 8, "randomized")
    exact = _parc_code_formula(X, y, 8, "full")
    assert parc(X, y, n_components=8) == pytest.approx(code, rel=1e-9)
    assert parc(X, y, n_components=8, pca="exact") == pytest.approx(exact, rel=1e-9)
    assert abs(code - exact) > 1e-3 * abs(exact)  # the two PCAs really differ here


# ---------------------------------------------------------------------------------------------------- NLEEP
def test_nleep_log_and_probability_variants_by_hand():
    # two far-apart clusters: A (x ~ -10) holds 4 samples of class 0, B (x ~ +10) 2 of class 0 and 2 of class 1.
    # With 2 components the mixture posteriors are one-hot per cluster, so P(y=0|A) = 1, P(y|B) = (1/2, 1/2).
    # mean probability (the SFDA/ETran/PED code): (4 * 1 + 4 * 1/2) / 8 = 0.75;
    # mean log-probability (the paper, default): (4 * 0 + 4 * log 1/2) / 8 = -log(2) / 2.
    X = np.array([[-10.1], [-10.0], [-9.9], [-10.05], [9.9], [10.1], [10.0], [9.95]])
    y = np.array([0, 0, 0, 0, 0, 1, 0, 1])
    assert nleep(X, y, components_per_class=1) == pytest.approx(-math.log(2) / 2, abs=1e-9)
    assert nleep(X, y, components_per_class=1, log=False) == pytest.approx(0.75, abs=1e-9)


# ------------------------------------------------------------------------------------------------------ PED
def test_ped_motion_two_classes_by_hand():
    # standardisation by a reference with mean 0, std 1 (identity). Classes {-1, 1} and {1, 3}: radii
    # r = sqrt(var) = 1, distance D = 2. nsigma = 2: overlap o = 2 (1 + 1) - D = 4 - D; each class moves away
    # by t^2 o / 2 = 0.005 o (t = 0.1, c = 1), so 4 - D shrinks by 0.99 per step; the change ratio 0.99^n stays
    # above 0.5, so all 6 steps apply: D_6 = 4 - 2 * 0.99^6.
    X = np.array([[-1.0], [1.0], [1.0], [3.0]])
    y = np.array([0, 0, 1, 1])
    ref = np.array([[-1.0], [1.0]])
    m = ped_motion(X, y, reference=ref, nsigma=2.0)
    half = (2 - 2 * 0.99 ** 6) / 2
    np.testing.assert_allclose(m.X[:, 0], [-1 - half, 1 - half, 1 + half, 3 + half], rtol=1e-12)
    assert m.steps == 6
    np.testing.assert_allclose(m.changes, [0.02 * 0.99 ** n for n in range(6)], rtol=1e-12)
    # exit rule: the second step's change is 0.99 of the first, below 0.995 -> one step only
    one = ped_motion(X, y, reference=ref, nsigma=2.0, exit_ratio=0.995)
    assert one.steps == 1 and one.X[0, 0] == pytest.approx(-1.01)
    # no overlap (nsigma = 0.5: 0.5 (1 + 1) < 2): nothing moves
    assert ped_motion(X, y, reference=ref, nsigma=0.5).steps == 0
    # the score is the base score (SFDA) of the moved features
    assert ped(X, y, reference=ref, nsigma=2.0) == pytest.approx(sfda(m.X, y), rel=1e-12)
    assert ped(X, y, reference=ref, nsigma=2.0, base="logme") == pytest.approx(score("logme", m.X, y))


def test_ped_three_classes_in_the_plane_against_the_formula():
    rng = np.random.default_rng(5)
    y = np.repeat(np.arange(3), 15)
    X = rng.normal(size=(45, 2)) * 0.8 + np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.5]])[y]
    X_before = X.copy()
    ref = rng.normal(size=(200, 2)) * [2.0, 0.5] + [1.0, -1.0]
    m_, s_ = ref.mean(0), np.maximum(ref.std(0), 1e-3)
    Z = (X - m_) / s_
    mu = np.array([Z[y == k].mean(0) for k in range(3)])
    rad = np.array([math.sqrt(Z[y == k].var(0).sum()) for k in range(3)])
    first, steps = None, 0
    for n in range(6):  # the released code's loop, written out pair by pair
        delta = np.zeros_like(mu)
        for a in range(3):
            for b in range(3):
                if a != b:
                    D = np.linalg.norm(mu[a] - mu[b])
                    o = max(0.6 * (rad[a] + rad[b]) - D, 0.0)
                    delta[a] += min(0.5 * 0.1 ** 2 * o, o) * (mu[a] - mu[b]) / D
        change = np.abs(delta).sum()
        first = change if n == 0 else first
        if not change / first > 0.5:
            break
        mu += delta
        Z = Z + delta[y]
        steps += 1
    moved = Z * s_ + m_
    mine = ped_motion(X, y, reference=ref)
    assert mine.steps == steps == 6
    np.testing.assert_allclose(mine.X, moved, rtol=1e-10, atol=1e-12)
    # without a reference the target's own statistics standardise
    np.testing.assert_allclose(ped_motion(X, y).X, ped_motion(X, y, reference=X).X, rtol=1e-12)
    assert np.array_equal(X, X_before)  # input untouched
    with pytest.raises(ValueError, match="reference"):
        ped_motion(X, y, reference=np.ones((3, 5)))
    with pytest.raises(ValueError, match="base"):
        ped(X, y, base="ncti")
