"""Metric registry, compute_all and the text table: metadata contract for every registered metric."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from nctransfer import FeatureStats
from nctransfer import metrics as M
from nctransfer.exceptions import InputValueError, NotFoundError

ALL = ["nc1", "nc2_equinorm", "nc2_equiangularity", "nc2_max_angle", "nc2_etf_distance", "nc3", "nc4",
       "ncc_accuracy", "cdnv", "numerical_rank", "vci", "fuzziness", "squared_distance", "cosine_d_within",
       "class_separation"]


def data(seed=0, N=300, d=6, K=4, scale=1.0):
    rng = np.random.default_rng(seed)
    y = np.arange(N) % K
    return rng.normal(size=(N, d)) + scale * rng.normal(size=(K, d))[y], y


def test_every_spec_metric_is_registered_with_metadata():
    assert M.list_metrics() == ALL
    for name, info in M.METRICS.items():
        assert info.name == name and callable(info.fn)
        assert info.more_collapsed in ("lower", "higher") and info.needs in ("stats", "samples")
        assert "docs/methods.md#" in info.reference and info.description
        assert info.range[0] <= info.range[1]
    assert M.list_metrics(needs="samples") == ["nc4", "ncc_accuracy", "numerical_rank"]
    assert M.METRICS["nc3"].requires == ("W",)
    assert M.METRICS["ncc_accuracy"].higher_is_more_collapsed and not M.METRICS["vci"].higher_is_more_collapsed
    assert M.METRICS["class_separation"].range_str() == "[-inf, 1]"
    assert M.get_metric("vci").direction == "lower = more collapsed"
    with pytest.raises(NotFoundError, match="unknown metric 'vic'. Did you mean vci"):
        M.get_metric("vic")


@pytest.mark.parametrize("seed,scale", [(0, 0.2), (1, 1.0), (2, 5.0)])
def test_values_lie_in_the_declared_range(seed, scale):
    X, y = data(seed, scale=scale)
    W = np.random.default_rng(seed).normal(size=(4, 6))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        values = M.compute_all(X, y, W=W)
    assert list(values) == ALL
    for name, value in values.items():
        lo, hi = M.METRICS[name].range
        assert lo <= value <= hi, (name, value)


def test_compute_all_skips_what_it_cannot_compute_and_agrees_with_functions():
    X, y = data()
    s = FeatureStats().update(X, y)
    from_stats = M.compute_all(s)
    assert list(from_stats) == [n for n in ALL if M.METRICS[n].needs == "stats" and n != "nc3"]
    from_arrays = M.compute_all(X, y)
    assert "nc3" not in from_arrays and "ncc_accuracy" in from_arrays
    for name, value in from_stats.items():
        assert value == pytest.approx(from_arrays[name], rel=1e-10, abs=1e-13)
    assert from_arrays["nc1"] == M.nc1(X, y) and from_arrays["vci"] == M.vci(X, y)
    assert from_arrays["cosine_d_within"] == M.cosine_similarity(X, y).d_within


def test_compute_all_selection_options_and_classifier():
    X, y = data()
    W = np.random.default_rng(3).normal(size=(4, 6))
    out = M.compute_all(X, y, metrics=["nc2_*", "vci"], options={"vci": {"ridge": 2.0}})
    assert list(out) == ["nc2_equinorm", "nc2_equiangularity", "nc2_max_angle", "nc2_etf_distance", "vci"]
    assert out["vci"] == M.vci(X, y, ridge=2.0)
    with_w = M.compute_all(X, y, metrics=["nc3", "nc4"], W=W, b=np.ones(4))
    assert with_w["nc3"] == M.nc3(X, y, W=W)
    assert with_w["nc4"] == M.nc4(X, y, W=W, b=np.ones(4))
    preds = M.compute_all(X, y, metrics="nc4", predictions=y)  # classifier == labels: nc4 = NCC error
    assert preds["nc4"] == pytest.approx(1 - M.ncc_accuracy(X, y))
    assert M.compute_all(X, y, metrics="nc1", options={"nc1": {"rank": 1}})["nc1"] == M.nc1(X, y, rank=1)


def test_prepared_features_share_work():
    X, y = data()
    p = M.prepare(X, y)
    assert repr(p) == "PreparedFeatures(n=300, d=6, K=4, source='samples', domain='features')"
    M.nc1(p)
    M.fuzziness(p)
    assert {"between_svd", "class_variances", "within_between_trace_3"} <= set(p._cache)
    assert M.prepare(p) is p
    np.testing.assert_allclose(p.class_means(), [X[y == k].mean(0) for k in range(4)])


def test_register_a_custom_metric_and_compute_it():
    @M.register_metric("test_within_trace", more_collapsed="lower", range=(0, math.inf), needs="stats",
                       reference="test; docs/methods.md#other-metrics", description="tr(Sigma_W)")
    def within_trace(X_or_stats, y=None):
        return M.prepare(X_or_stats, y).within_trace()

    try:
        X, y = data()
        out = M.compute_all(FeatureStats().update(X, y), metrics="test_*")
        assert out["test_within_trace"] == pytest.approx(np.trace(FeatureStats().update(X, y).sigma_W()))
        with pytest.raises(InputValueError, match="metric 'test_within_trace' is already registered"):
            M.register_metric("test_within_trace", more_collapsed="lower", range=(0, 1), needs="stats",
                              reference="x")
    finally:
        M.METRICS.pop("test_within_trace", None)
    with pytest.raises(InputValueError, match="metric name must be lowercase snake_case; got 'Bad-Name'"):
        M.register_metric("Bad-Name", more_collapsed="lower", range=(0, 1), needs="stats", reference="x")
    with pytest.raises(InputValueError, match=r"more_collapsed must be one of \('lower', 'higher'\); got 'up'"):
        M.register_metric("ok_name", more_collapsed="up", range=(0, 1), needs="stats", reference="x")
    with pytest.raises(InputValueError, match=r"needs must be one of \('stats', 'samples'\); got 'gpu'"):
        M.register_metric("ok_name", more_collapsed="lower", range=(0, 1), needs="gpu", reference="x")
    assert "ok_name" not in M.METRICS


def test_format_table_columns_nan_and_missing():
    text = M.format_table({"digits": {"nc1": 0.123456, "vci": float("nan")}, "fashion": {"nc1": 2.0}}, digits=3)
    lines = text.splitlines()
    assert lines[0].split() == ["metric", "direction", "digits", "fashion"]
    assert lines[2].split() == ["nc1", "lower", "=", "more", "collapsed", "0.123", "2"]
    assert lines[3].split() == ["vci", "lower", "=", "more", "collapsed", "nan", "-"]
    plain = M.format_table({"custom": 1.5}, direction=False, title="T")
    assert plain.splitlines() == ["T", "metric  value", "------  -----", "custom    1.5"]
