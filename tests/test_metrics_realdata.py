"""Every collapse metric on real data: scikit-learn digits pixels (checked against the naive reference) and a
balanced Fashion-MNIST subset (slow; streamed through FeatureStats in batches, as a data loader would)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import _metrics_reference as R
from nctransfer import FeatureStats
from nctransfer import metrics as M


def test_digits_pixels_match_the_reference():
    from nctransfer.data.arrays import load_digits_arrays

    images, y = load_digits_arrays()
    X = images.reshape(len(images), -1) / 16.0  # 64 pixels, some always 0: Sigma_T is singular
    values = M.compute_all(X, y)
    assert values["nc1"] == pytest.approx(R.nc1(X, y), rel=1e-9)
    assert values["vci"] == pytest.approx(R.vci(X, y), rel=1e-9)
    assert values["cdnv"] == pytest.approx(R.cdnv(X, y)[0], rel=1e-9)
    assert values["squared_distance"] == pytest.approx(R.squared_distance(X, y), rel=1e-9)
    assert values["nc2_etf_distance"] == pytest.approx(R.nc2(X, y)["etf_distance"], rel=1e-9)
    assert values["cosine_d_within"] == pytest.approx(R.cosine(X, y)["d_within"], rel=1e-9)
    assert values["ncc_accuracy"] == pytest.approx(R.ncc_accuracy(X, y))
    assert values["numerical_rank"] == pytest.approx(R.numerical_rank(X, y), rel=1e-9)
    assert 0.85 < values["ncc_accuracy"] < 0.95  # nearest class mean on raw digit pixels: ~0.90
    streamed = FeatureStats()
    for start in range(0, len(X), 100):
        streamed.update(X[start:start + 100], y[start:start + 100])
    for name, value in M.compute_all(streamed).items():
        assert value == pytest.approx(values[name], rel=1e-9, abs=1e-12), name


@pytest.mark.slow
def test_fashion_mnist_pixels():
    from nctransfer.data.arrays import find_fashion_mnist, load_fashion_mnist_arrays
    from nctransfer.exceptions import NotFoundError

    try:
        find_fashion_mnist()
    except NotFoundError:
        pytest.skip("Fashion-MNIST IDX files not installed (apt-get install dataset-fashion-mnist)")
    images, labels = load_fashion_mnist_arrays("train")
    rng = np.random.default_rng(0)
    idx = np.sort(np.concatenate([rng.choice(np.flatnonzero(labels == c), 300, replace=False) for c in range(10)]))
    X = images[idx].reshape(len(idx), -1).astype(np.float32) / 255.0  # 3000 x 784
    y = labels[idx]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # N = 3000 < 10 d: the VCI warning is expected here
        values = M.compute_all(X, y)
        stats = FeatureStats()
        for start in range(0, len(X), 256):
            stats.update(X[start:start + 256], y[start:start + 256])
        streamed = M.compute_all(stats)
    for name, value in streamed.items():
        assert value == pytest.approx(values[name], rel=1e-8, abs=1e-12), name
    assert 0.6 < values["ncc_accuracy"] < 0.8  # nearest class mean on raw Fashion-MNIST pixels: ~0.68
    assert values["nc1"] == pytest.approx(R.nc1(X, y), rel=1e-8)
    assert 0 < values["vci"] < 1 and values["nc1"] > 0 and values["cdnv"] > 0
