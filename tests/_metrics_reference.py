"""Naive two-pass float64 reference implementations of the collapse metrics, written directly from the formulas
of docs/methods.md#notation #collapse-metrics (independently of nctransfer's code: explicit matrices, loops, numpy pinv/eigh)."""

from __future__ import annotations

import numpy as np


def moments(X, y):
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y)
    classes = sorted(set(y.tolist()))
    N, d = X.shape
    K = len(classes)
    mus = np.array([X[y == c].mean(0) for c in classes])
    ns = np.array([np.sum(y == c) for c in classes], dtype=float)
    mu_G = X.mean(0)
    mu_bar = mus.mean(0)
    Sw = np.zeros((d, d))
    for k, c in enumerate(classes):
        D = X[y == c] - mus[k]
        Sw += D.T @ D
    Sw /= N
    Sb = sum(np.outer(m - mu_bar, m - mu_bar) for m in mus) / K
    Sbw = sum(n / N * np.outer(m - mu_G, m - mu_G) for n, m in zip(ns, mus))
    T = (X - mu_G).T @ (X - mu_G) / N
    return dict(X=X, y=y, classes=classes, N=N, d=d, K=K, mus=mus, ns=ns, mu_G=mu_G, mu_bar=mu_bar,
                Sw=Sw, Sb=Sb, Sbw=Sbw, T=T)


def nc1(X, y, r=None):
    m = moments(X, y)
    r = min(m["d"], m["K"] - 1) if r is None else r
    lam, V = np.linalg.eigh(m["Sb"])
    lam, V = lam[::-1][:r], V[:, ::-1][:, :r]
    pinv = V @ np.diag(1 / lam) @ V.T
    return np.trace(m["Sw"] @ pinv) / m["K"]


def nc2(X, y):
    m = moments(X, y)
    M = m["mus"] - m["mu_bar"]
    K = m["K"]
    norms = np.linalg.norm(M, axis=1)
    cos = [M[k] @ M[l] / (norms[k] * norms[l]) for k in range(K) for l in range(K) if k != l]
    Mn = M / norms[:, None]
    G = Mn @ Mn.T
    E = np.eye(K) - np.ones((K, K)) / K
    return dict(equinorm=np.std(norms) / np.mean(norms), equiangularity=np.std(cos),
                max_angle=np.mean([abs(c + 1 / (K - 1)) for c in cos]),
                etf_distance=np.linalg.norm(G / np.linalg.norm(G) - E / np.linalg.norm(E)))


def nc3(X, y, W):
    m = moments(X, y)
    M = m["mus"] - m["mu_bar"]
    return np.linalg.norm(W / np.linalg.norm(W) - M / np.linalg.norm(M)) ** 2


def ncc_labels(X, mus, classes):
    X = np.asarray(X, dtype=np.float64)
    out = []
    for x in X:
        dist = [np.linalg.norm(x - mu) for mu in mus]
        out.append(classes[int(np.argmin(dist))])
    return np.array(out)


def ncc_accuracy(X, y):
    m = moments(X, y)
    return float(np.mean(ncc_labels(X, m["mus"], m["classes"]) == np.asarray(y)))


def cdnv(X, y):
    m = moments(X, y)
    K = m["K"]
    var = [np.mean(np.sum((m["X"][m["y"] == c] - m["mus"][k]) ** 2, axis=1)) for k, c in enumerate(m["classes"])]
    vals = []
    V = np.full((K, K), np.nan)
    for i in range(K):
        for j in range(K):
            if i != j:
                V[i, j] = (var[i] + var[j]) / (2 * np.sum((m["mus"][i] - m["mus"][j]) ** 2))
                vals.append(V[i, j])
    return float(np.mean(vals)), V


def numerical_rank(X, y, center=False):
    m = moments(X, y)
    out = []
    for k, c in enumerate(m["classes"]):
        H = m["X"][m["y"] == c]
        if center:
            H = H - H.mean(0)
        out.append(np.linalg.norm(H, "fro") ** 2 / np.linalg.norm(H, 2) ** 2)
    return float(np.mean(out))


def vci(X, y, ridge=None, rtol=None):
    m = moments(X, y)
    r = min(m["d"], m["K"] - 1)
    if ridge is None:
        rtol = max(m["N"], m["d"]) * np.finfo(float).eps if rtol is None else rtol
        Tp = np.linalg.pinv(m["T"], rcond=rtol, hermitian=True)
    else:
        Tp = np.linalg.inv(m["T"] + ridge * np.eye(m["d"]))
    return 1 - np.trace(Tp @ m["Sbw"]) / r


def fuzziness(X, y, r=None):
    return nc1(X, y, r) * moments(X, y)["K"]


def squared_distance(X, y):
    m = moments(X, y)
    return np.trace(m["Sw"]) / np.trace(m["Sbw"])


def cosine(X, y):
    m = moments(X, y)
    Xn = m["X"] / np.linalg.norm(m["X"], axis=1, keepdims=True)
    S = Xn @ Xn.T
    within = [np.mean(1 - S[np.ix_(m["y"] == c, m["y"] == c)]) for c in m["classes"]]
    d_within = float(np.mean(within))
    d_total = float(np.mean(1 - S))
    return dict(d_within=d_within, d_total=d_total, class_separation=1 - d_within / d_total)
