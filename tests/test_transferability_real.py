"""Real data: rank pixel-derived feature extractors on scikit-learn's digits against linear-probe accuracy."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from nctransfer.data.arrays import load_digits_arrays
from nctransfer.metrics import probe_accuracy
from nctransfer.transferability import evaluate, rank


@pytest.mark.slow
def test_digits_pixel_feature_pool_is_ranked_like_the_linear_probe():
    from sklearn.decomposition import PCA

    X, y = load_digits_arrays()
    X = X.reshape(len(X), -1) / 16.0
    perm = np.random.default_rng(0).permutation(len(y))
    tr, te = perm[: len(y) // 2], perm[len(y) // 2:]
    imgs = X.reshape(-1, 8, 8)
    pooled = imgs.reshape(-1, 2, 4, 2, 4).mean(axis=(2, 4)).reshape(len(X), -1)  # 2 x 2 "low resolution"
    pool = {"pixels": X, "pool4x4": pooled}
    for k in (24, 8, 3):
        pool[f"pca{k}"] = PCA(n_components=k, svd_solver="full").fit(X[tr]).transform(X)
    truth = {name: probe_accuracy(F[tr], y[tr], F[te], y[te], C_grid=(1.0,)).accuracy for name, F in pool.items()}
    order = sorted(truth, key=truth.get)
    assert order[0] in ("pca3", "pool4x4") and order[-1] in ("pixels", "pca24")  # the ground truth is sensible
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        df = rank({name: (F[tr], y[tr]) for name, F in pool.items()})
    ev = evaluate(df.drop(columns=["leep", "nce"]), truth)  # no source classifier: skipped (NaN)
    assert df[["leep", "nce"]].isna().all().all()
    for method in ("logme", "hscore", "sfda", "transrate", "ncti"):
        assert ev[method]["weighted_tau"] > 0.7, (method, ev[method], df[method].to_dict(), truth)
    assert ev["hscore"]["top1_regret"] < 0.02
