"""Ground-truth noise from the test predictions: the probe keeps per-sample correctness, the cache and results.json
carry it packed, and the bootstrap resamples the shared test set jointly for every candidate."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nctransfer.exceptions import InputValueError
from nctransfer.metrics import pack_correct, probe_accuracy, unpack_correct
from nctransfer.transferability import evaluate

pytestmark = pytest.mark.usefixtures("one_thread")  # one thread (tests/conftest.py)


def test_probe_keeps_per_sample_correctness():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 20)
    X = rng.normal(size=(60, 4)) + 1.5 * np.eye(3, 4)[y]
    Xte, yte = X[::2] + 0.3 * rng.normal(size=(30, 4)), y[::2]
    r = probe_accuracy(X, y, Xte, yte, C_grid=None, seed=0)
    assert r.correct is not None and r.correct.dtype == bool and r.correct.shape == (30,)
    assert r.accuracy == pytest.approx(r.correct.mean())
    assert 0 < r.correct.sum() < 30  # some right, some wrong on this noisy case
    # by hand: samples at a class centre are right; one moved deep into another class is wrong
    r2 = probe_accuracy(X, y, np.array([1.5 * np.eye(3, 4)[0], 6 * np.eye(3, 4)[2]]), np.array([0, 1]), C_grid=None)
    assert r2.correct.tolist() == [True, False] and r2.accuracy == 0.5


def test_pack_correct_hand_case_and_errors():
    assert pack_correct([True, False, True]) == "3:a0"  # bits 101 00000 = 0xa0
    assert unpack_correct("3:a0").tolist() == [True, False, True]
    assert pack_correct([]) == "0:"
    for bad in ("a0", "9:a0", "x:a0", "3:zz", "1:a0a0"):
        with pytest.raises(InputValueError, match="unpack_correct"):
            unpack_correct(bad)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.booleans(), max_size=70))
def test_pack_correct_round_trip(bits):
    assert unpack_correct(pack_correct(bits)).tolist() == bits


def _nested_pool(n_test, M=6):
    """M candidates on one test set, accuracies 0.70 ... 0.80; each gets right every sample the one below gets right
    (nested correctness): their errors are perfectly paired, so the order of their accuracies survives any
    resampling of the test set."""
    rng = np.random.default_rng(3)
    u = rng.random(n_test)
    p = np.linspace(0.70, 0.80, M)
    correct = {f"m{i}": (u < p[i]).astype(float) for i in range(M)}
    return {m: float(c.mean()) for m, c in correct.items()}, correct


def test_joint_resampling_keeps_paired_errors_paired():
    truth, correct = _nested_pool(200)
    assert len(set(truth.values())) == len(truth)
    joint = evaluate(truth, truth, intervals=True, truth_samples=correct, n_boot=300, seed=0)
    # the same resampled indices for every candidate: a score equal to the truth stays perfect
    assert joint["weighted_tau_lo"] == pytest.approx(1.0) and joint["spearman_lo"] == pytest.approx(1.0)
    # the binomial standard errors treat the candidates as independent: the interval widens below 1
    se = {m: float(np.sqrt(a * (1 - a) / 200)) for m, a in truth.items()}
    indep = evaluate(truth, truth, intervals=True, truth_se=se, n_boot=300, seed=0)
    assert indep["weighted_tau_lo"] < 0.9 and indep["weighted_tau_hi"] == pytest.approx(1.0)


def _grid_pool(n_test):
    """8 candidates, accuracies near 0.60 ... 0.88, independent errors on one shared test set of ``n_test``."""
    rng = np.random.default_rng(5)
    p = np.linspace(0.60, 0.88, 8)
    correct = {f"m{i}": rng.random(n_test) < p[i] for i in range(8)}
    return {m: float(c.mean()) for m, c in correct.items()}, correct


def test_pipeline_per_sample_path_contains_one_and_shrinks_with_more_test_samples():
    """The packed correctness stored by the probe stage (results.json ``truth.details``) gives the bootstrap its
    per-sample resampling; a score equal to the truth: the interval contains 1 and shrinks with more test samples."""
    from nctransfer.pipeline.core import _truth_samples

    widths = []
    for n_test in (60, 2000):
        truth, correct = _grid_pool(n_test)
        details = {m: {"C": 1.0, "correct": pack_correct(c)} for m, c in correct.items()}
        samples = _truth_samples(details, list(truth))
        assert samples is not None and all(samples[m].tolist() == correct[m].tolist() for m in truth)
        ev = evaluate(truth, truth, intervals=True, truth_samples=samples, n_boot=400, seed=1)
        assert ev["weighted_tau_lo"] <= 1.0 <= ev["weighted_tau_hi"] + 1e-12
        assert ev["spearman_lo"] <= 1.0 <= ev["spearman_hi"] + 1e-12
        widths.append((ev["weighted_tau_hi"] - ev["weighted_tau_lo"], ev["spearman_hi"] - ev["spearman_lo"]))
    (w_tau_small, w_rho_small), (w_tau_large, w_rho_large) = widths
    assert w_tau_small > 0.05 and w_tau_large < w_tau_small and w_rho_large < w_rho_small
    # a candidate without per-sample correctness (an older cache entry) or a different test set: no per-sample path
    assert _truth_samples({"a": {"correct": "3:a0"}, "b": {"C": 1.0}}, ["a", "b"]) is None
    assert _truth_samples({"a": {"correct": "3:a0"}, "b": {"correct": "4:a0"}}, ["a", "b"]) is None


def test_rank_models_resamples_the_probe_test_predictions(tmp_path):
    from _user_datasets import ToTensorDataset

    from nctransfer.pipeline import rank_models

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 12)
    X = (rng.random((36, 16, 16)) * 100).astype(np.uint8)
    for c in range(3):
        X[y == c, 8 * (c // 2):8 * (c // 2) + 8, 8 * (c % 2):8 * (c % 2) + 8] += 150
    te = np.arange(36) % 3 == 0
    kw = dict(pretrained=False, image_size=32, per_class=None, test_per_class=None, probe_C_grid=(0.1, 1.0),
              progress=False, methods="logme,hscore", cache_dir=tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = rank_models(["timm:resnet10t", "timm:efficientnet_lite0"], train=ToTensorDataset(X[~te], y[~te]),
                          test=ToTensorDataset(X[te], y[te]), **kw)
        again = rank_models(["timm:resnet10t", "timm:efficientnet_lite0"], train=ToTensorDataset(X[~te], y[~te]),
                            test=ToTensorDataset(X[te], y[te]), **kw)  # from the cache
    assert res["truth"]["noise"].startswith("per-sample")
    for name, acc in res["truth"]["accuracy"].items():
        c = unpack_correct(res["truth"]["details"][name]["correct"])
        assert len(c) == int(te.sum()) and c.mean() == pytest.approx(acc)
    assert again["truth"]["details"] == res["truth"]["details"]
    assert again["evaluation_intervals"] == res["evaluation_intervals"]
