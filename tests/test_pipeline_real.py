"""Real models on real data (slow; CI runs it): the three bundled ImageNet EfficientNet-Lite models and a randomly
initialised control, penultimate features of a Fashion-MNIST subset. The recommended score must rank the control
last, and the ground truth must agree that pre-trained features are better."""

from __future__ import annotations

import warnings

import pytest

from nctransfer.exceptions import NotFoundError
from nctransfer.pipeline import DEFAULT_RECOMMENDED, rank_models

MODELS = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "random:efficientnet_lite0"]


def _fashion_available() -> bool:
    from nctransfer.data import find_fashion_mnist

    try:
        find_fashion_mnist()
        return True
    except NotFoundError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not _fashion_available(), reason="Fashion-MNIST IDX files not installed (Debian package "
                    "dataset-fashion-mnist; `make test` installs it when run as root)")
def test_recommended_score_ranks_random_control_last_on_fashion_mnist(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = rank_models(MODELS, "fashion-mnist", taps="penultimate", per_class=20, test_per_class=20,
                          image_size=64, methods=[DEFAULT_RECOMMENDED, "logme", "neg_nc1"], out=tmp_path,
                          cache_dir=tmp_path / "cache", progress=False)
    assert res["recommended_score"] == DEFAULT_RECOMMENDED
    assert res["ranking"][-1] == "random:efficientnet_lite0", res["ranking"]
    assert res["recommended"] != "random:efficientnet_lite0"
    acc = res["truth"]["accuracy"]
    assert max(acc[m] for m in MODELS[:3]) > acc["random:efficientnet_lite0"]
    assert (tmp_path / "report.html").is_file()
