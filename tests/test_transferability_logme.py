"""LogME (docs/methods.md#logme): brute-force evidence, the N < d defect of the reference code, streaming statistics,
target matrices, details and the torch paths."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from nctransfer import FeatureStats
from nctransfer.exceptions import ConvergenceWarning, InputValueError
from nctransfer.transferability import Workspace, logme

LOG2PI = np.log(2 * np.pi)


def evidence_direct(X, t, alpha, beta):
    """Log evidence L(alpha, beta) by a direct Cholesky of A = alpha I + beta X^T X (no eigendecomposition)."""
    n, d = X.shape
    A = alpha * np.eye(d) + beta * X.T @ X
    L = np.linalg.cholesky(A)
    m = beta * np.linalg.solve(A, X.T @ t)
    r = X @ m - t
    return (d / 2 * np.log(alpha) + n / 2 * np.log(beta) - n / 2 * LOG2PI - beta / 2 * r @ r
            - alpha / 2 * m @ m - np.sum(np.log(np.diag(L))))


def brute_max(X, t):
    """max over (alpha, beta) of the direct evidence: a log10 grid with step 0.2 on [-5, 5]^2, then Nelder-Mead
    polishing from the eight best grid points (no use of the fixed point or of any eigendecomposition)."""
    from scipy.optimize import minimize

    grid = np.arange(-5.0, 5.0001, 0.2)
    vals = np.array([[evidence_direct(X, t, 10.0 ** a, 10.0 ** b) for b in grid] for a in grid])
    best = vals.max()
    for flat in np.argsort(vals, axis=None)[-8:]:
        start = [grid[flat // len(grid)], grid[flat % len(grid)]]
        res = minimize(lambda p: -evidence_direct(X, t, 10.0 ** p[0], 10.0 ** p[1]), start, method="Nelder-Mead",
                       options={"xatol": 1e-9, "fatol": 1e-12, "maxiter": 2000})
        best = max(best, -res.fun)
    return best


def reference_like(X, y, exact_logdet: bool, eps: float = 0.0):
    """The reference fixed point (with its ``eps`` guard) run to convergence; ``exact_logdet=False`` reproduces
    LogME.py's log det over the r non-zero eigenvalues only (its N < d defect)."""
    n, d = X.shape
    u, s, _ = np.linalg.svd(X, full_matrices=False)
    keep = s > 1e-10 * s[0]
    u, sigma = u[:, keep], s[keep] ** 2
    out = []
    for k in np.unique(y):
        t = (y == k).astype(float)
        x2 = (u.T @ t) ** 2
        res_x2 = t @ t - x2.sum()
        alpha = beta = 1.0
        for _ in range(10000):
            tt = alpha / beta
            gamma = np.sum(sigma / (sigma + tt))
            m2 = np.sum(sigma * x2 / (tt + sigma) ** 2)
            res2 = np.sum(x2 / (1 + sigma / tt) ** 2) + res_x2
            alpha, beta = gamma / (m2 + eps), (n - gamma) / (res2 + eps)
            if abs(alpha / beta - tt) / tt < 1e-13:
                break
        tt = alpha / beta
        m2 = np.sum(sigma * x2 / (tt + sigma) ** 2)
        res2 = np.sum(x2 / (1 + sigma / tt) ** 2) + res_x2
        logdet = np.sum(np.log(alpha + beta * sigma))
        if exact_logdet:
            logdet += (d - len(sigma)) * np.log(alpha)
        ev = d / 2 * np.log(alpha) + n / 2 * np.log(beta) - beta / 2 * res2 - alpha / 2 * m2 - logdet / 2 \
            - n / 2 * LOG2PI
        out.append(ev / n)
    return np.array(out)


@pytest.mark.parametrize("n,d,K,rank", [(40, 4, 3, 4), (12, 20, 2, 5), (30, 25, 3, 25)])
def test_logme_matches_brute_force_evidence(n, d, K, rank):
    """Including N < d: features of rank 5 < N < d, so the targets are not interpolated and the evidence has a
    finite maximiser; 15 of its 20 directions are null (the reference's defect would drop their log alpha)."""
    rng = np.random.default_rng(n + d)
    y = np.arange(n) % K
    X = rng.normal(size=(n, d)) + 0.8 * rng.normal(size=(K, d))[y]
    if rank < min(n, d):
        X = X[:, :rank] @ rng.normal(size=(rank, d))
    det = logme(X, y, max_iter=10000, tol=1e-13, eps=0.0, return_details=True)
    assert det.rank == rank and det.converged.all()
    for k in range(K):
        t = (y == k).astype(float)
        # the reported evidence is the direct Cholesky evidence at the returned (alpha, beta) ...
        assert det.evidence[k] == pytest.approx(evidence_direct(X, t, det.alpha[k], det.beta[k]) / n, rel=1e-10)
        # ... and that is the maximum over (alpha, beta)
        brute = brute_max(X, t) / n
        assert det.evidence[k] >= brute - 1e-9
        assert det.evidence[k] == pytest.approx(brute, abs=1e-7)
    # the default (reference) stopping rule is close to the maximum
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        assert logme(X, y) == pytest.approx(det.score, abs=2e-3)


def test_logme_exact_evidence_fixes_reference_defect_when_n_below_d():
    rng = np.random.default_rng(1)
    n, d = 15, 40
    y = np.arange(n) % 3
    X = rng.normal(size=(n, d)) + rng.normal(size=(3, d))[y]
    # N < d: the targets are interpolated, so the eps guard of the reference keeps beta finite
    det = logme(X, y, max_iter=10000, tol=1e-13, return_details=True)
    assert det.rank == n and det.converged.all()
    exact = reference_like(X, y, exact_logdet=True, eps=1e-5)
    defect = reference_like(X, y, exact_logdet=False, eps=1e-5)
    np.testing.assert_allclose(det.evidence, exact, rtol=1e-9, atol=1e-10)
    # the reference drops (d - r)/2 log alpha: the difference is exactly that term (per sample)
    np.testing.assert_allclose(defect - det.evidence, (d - n) / (2 * n) * np.log(det.alpha), rtol=1e-8)
    assert np.all(defect > det.evidence)  # alpha > 1 here: the reference inflates the score


def test_logme_coincides_with_reference_when_n_above_d():
    rng = np.random.default_rng(2)
    y = np.arange(300) % 4
    X = rng.normal(size=(300, 12)) + rng.normal(size=(4, 12))[y]
    det = logme(X, y, max_iter=10000, tol=1e-14, eps=0.0, return_details=True)
    np.testing.assert_allclose(det.evidence, reference_like(X, y, exact_logdet=False), rtol=1e-10)
    np.testing.assert_allclose(det.evidence, reference_like(X, y, exact_logdet=True), rtol=1e-10)


@pytest.mark.parametrize("n,d", [(200, 6), (10, 30)])
def test_streaming_logme_equals_one_shot(n, d):
    rng = np.random.default_rng(3)
    y = np.array(["cat", "dog", "eel"])[np.arange(n) % 3]
    X = 5.0 + rng.normal(size=(n, d)) + 2 * rng.normal(size=(3, d))[np.arange(n) % 3]
    one = logme(X, y, max_iter=50, tol=1e-12)
    cuts = np.sort(rng.choice(np.arange(1, n), size=4, replace=False))
    parts = [FeatureStats().update(a, b) for a, b in zip(np.split(X, cuts), np.split(y, cuts))]
    rng.shuffle(parts)
    merged = sum(parts[1:], parts[0])
    assert logme(merged, max_iter=50, tol=1e-12) == pytest.approx(one, rel=1e-9, abs=1e-10)


def test_logme_target_matrices():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(80, 5))
    y = np.arange(80) % 3
    onehot = np.eye(3)[y]
    # a 0/1 multi-label matrix with one-hot rows is classification
    assert logme(X, onehot) == pytest.approx(logme(X, y), rel=1e-12)
    T = X @ rng.normal(size=(5, 2)) + 0.1 * rng.normal(size=(80, 2))
    both = logme(X, T)
    cols = [logme(X, T[:, j], regression=True) for j in range(2)]
    assert both == pytest.approx(np.mean(cols), rel=1e-12)
    # a well-explained regression target has a higher evidence than noise
    assert cols[0] > logme(X, rng.normal(size=80), regression=True)


def test_logme_details_and_convergence_warning():
    rng = np.random.default_rng(5)
    y = np.arange(60) % 2
    X = rng.normal(size=(60, 3)) + y[:, None]
    det = logme(X, y, return_details=True)
    assert det.evidence.shape == (2,) and det.classes == [0, 1] and det.n == 60 and det.d == 3
    assert det.score == pytest.approx(det.evidence.mean())
    assert det.converged.all() and np.all(det.iterations <= 11)
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        logme(X, y, max_iter=1)


def test_logme_torch_inputs_and_device_path():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(6)
    for n, d in [(90, 7), (9, 20)]:
        y = np.arange(n) % 3
        X = rng.normal(size=(n, d)) + rng.normal(size=(3, d))[y]
        ref = logme(X, y)
        assert logme(torch.from_numpy(X).float(), torch.from_numpy(y)) == pytest.approx(ref, rel=1e-5)
        # the CUDA code path (decomposition on the tensor's device) run on a CPU tensor
        ws = Workspace(X, y, "logme")
        ws._torch = torch.from_numpy(X)
        assert logme(ws) == pytest.approx(ref, rel=1e-9)


def test_logme_bad_inputs():
    X = np.ones((10, 3))
    with pytest.raises(InputValueError, match="labels y are required"):
        logme(X)
    with pytest.raises(InputValueError, match="non-finite"):
        logme(np.full((4, 2), np.nan), [0, 1, 0, 1])
    with pytest.raises(InputValueError, match="all features are zero"):
        logme(np.zeros((6, 2)), [0, 1] * 3)
    with pytest.raises(InputValueError, match="max_iter"):
        logme(X, [0, 1] * 5, max_iter=0)
    with pytest.raises(InputValueError, match="regression targets need arrays"):
        logme(FeatureStats().update(X, [0, 1] * 5), regression=True)
