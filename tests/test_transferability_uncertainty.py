"""Bootstrap intervals of evaluate(), partial-coverage marking and the random-score baseline."""

import warnings

import numpy as np
import pytest

from nctransfer.transferability import evaluate
from nctransfer.transferability.uncertainty import bootstrap_intervals, random_score_baseline


def _pool(n_test, seed=0, M=8):
    """M models with true accuracies 0.60 ... 0.88 measured on one shared test set of n_test samples."""
    rng = np.random.default_rng(seed)
    p = np.linspace(0.60, 0.88, M)
    correct = {f"m{i}": (rng.random(n_test) < p[i]).astype(float) for i in range(M)}
    truth = {m: float(c.mean()) for m, c in correct.items()}
    return truth, correct


def _width(ev, key):
    return ev[f"{key}_hi"] - ev[f"{key}_lo"]


def test_interval_of_a_perfect_score_contains_one_and_shrinks_with_more_test_samples():
    widths = []
    for n_test in (60, 3000):
        truth, correct = _pool(n_test)
        ev = evaluate(truth, truth, intervals=True, truth_samples=correct, n_boot=400, seed=1)  # scores equal the truth
        assert ev["weighted_tau"] == pytest.approx(1.0) and ev["spearman"] == pytest.approx(1.0)
        assert ev["weighted_tau_lo"] <= 1.0 <= ev["weighted_tau_hi"] + 1e-12
        assert ev["spearman_lo"] <= 1.0 <= ev["spearman_hi"] + 1e-12
        assert ev["top1_regret_lo"] <= 0.0 + 1e-12 <= ev["top1_regret_hi"] + 1e-12
        widths.append((_width(ev, "weighted_tau"), _width(ev, "spearman"), _width(ev, "top1_regret")))
    small, large = widths
    assert small[0] > 0.05  # 60 test samples cannot separate accuracies 4 points apart
    assert all(w_large < w_small for w_small, w_large in zip(small, large))


def test_interval_from_standard_errors_and_reproducible_with_a_seed():
    truth, _ = _pool(200)
    se = {m: float(np.sqrt(a * (1 - a) / 200)) for m, a in truth.items()}
    a = evaluate(truth, truth, intervals=True, truth_se=se, n_boot=300, seed=7)
    b = evaluate(truth, truth, intervals=True, truth_se=se, n_boot=300, seed=7)
    c = evaluate(truth, truth, intervals=True, truth_se=se, n_boot=300, seed=8)
    assert a == b
    assert (a["weighted_tau_lo"], a["spearman_lo"]) != (c["weighted_tau_lo"], c["spearman_lo"])
    assert a["weighted_tau_lo"] < 1.0 and a["weighted_tau_hi"] == pytest.approx(1.0)
    # the same standard errors given as a truth DataFrame column
    import pandas as pd

    df = pd.DataFrame({"model": list(truth), "accuracy": list(truth.values()), "se": list(se.values())})
    assert evaluate(truth, df, intervals=True, n_boot=300, seed=7) == a
    # without any truth noise only the candidates are resampled: a perfect score stays perfect
    ev = evaluate(truth, truth, intervals=True, n_boot=300)
    assert ev["weighted_tau_lo"] == pytest.approx(1.0) and ev["weighted_tau_hi"] == pytest.approx(1.0)
    assert np.isnan(evaluate(truth, truth, intervals=True, n_boot=0)["weighted_tau_lo"])


def test_bootstrap_intervals_hand_case_and_errors():
    # two models, no truth noise, candidates resampled: a replicate either draws both (tau = 1, regret 0) or one
    # model twice (undefined tau; regret 0) -> the interval is the single point 1 / 0
    ci = bootstrap_intervals([1.0, 2.0], [0.5, 0.7], n_boot=200, seed=0)
    assert ci["weighted_tau"] == (1.0, 1.0) and ci["top1_regret"] == (0.0, 0.0)
    # a reversed score: regret 0.2 whenever both models are drawn, 0 otherwise
    ci = bootstrap_intervals([2.0, 1.0], [0.5, 0.7], n_boot=200, seed=0)
    assert ci["weighted_tau"] == (-1.0, -1.0) and ci["top1_regret"][1] == pytest.approx(0.2)
    with pytest.raises(ValueError, match="level"):
        bootstrap_intervals([1.0, 2.0], [0.5, 0.7], level=1.5)
    with pytest.raises(ValueError, match="truth_samples"):
        evaluate({"a": 1.0, "b": 2.0}, {"a": 0.5, "b": 0.7}, intervals=True, truth_samples={"a": [1, 0]})


def test_partial_coverage_is_reported():
    truth = {"a": 0.9, "b": 0.8, "c": 0.7, "d": 0.6}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ev = evaluate({"a": 4.0, "b": np.nan, "c": 2.0, "d": np.nan}, truth, intervals=True, n_boot=50)
    assert ev["n_scored"] == 2 and ev["n_pool"] == 4 and ev["coverage"] == 0.5
    full = evaluate({"a": 4.0, "b": 3.0, "c": 2.0, "d": 1.0}, truth, intervals=True, n_boot=50)
    assert set(evaluate({"a": 4.0, "b": 3.0, "c": 2.0, "d": 1.0}, truth)) == {
        "weighted_tau", "kendall", "spearman", "pearson", "top1_regret"}  # intervals only on request
    assert full["coverage"] == 1.0
    from nctransfer.cli.cmd_rank import format_evaluation

    table = format_evaluation({"leep": ev, "logme": full})
    lines = {ln.split()[0]: ln for ln in table.splitlines()[1:]}
    assert "2/4 partial" in lines["leep"] and "4/4" in lines["logme"] and "partial" not in lines["logme"]
    assert "[" in lines["logme"]  # the interval is printed


def test_random_score_baseline_is_centred_on_zero():
    truth = np.linspace(0.5, 0.9, 6)
    r = random_score_baseline(truth, n_draws=600, seed=0)
    assert abs(r["weighted_tau_mean"]) < 0.1 and abs(r["spearman_mean"]) < 0.1
    assert r["weighted_tau_lo"] < -0.4 and r["weighted_tau_hi"] > 0.4
    # regret of a random pick: the mean gap to the best, (0.9 - mean) = 0.2, in expectation
    assert r["top1_regret_mean"] == pytest.approx(0.2, abs=0.03)
    assert random_score_baseline(truth, n_draws=600, seed=0) == r


def test_report_shows_intervals_and_marks_partial_scores():
    from nctransfer.reports import render_html, render_markdown
    from test_reports_render import make_results

    res = make_results()
    res["evaluation"]["logme"].update(weighted_tau_lo=0.1, weighted_tau_hi=0.8, spearman_lo=0.2, spearman_hi=0.9,
                                      top1_regret_lo=0.0, top1_regret_hi=0.05, n_scored=9, n_pool=9, coverage=1.0)
    res["evaluation"]["leep"].update(n_scored=2, n_pool=9, coverage=2 / 9)
    md = render_markdown(res)
    row = {ln.split("|")[1].strip(): ln for ln in md.splitlines() if ln.startswith("| LOGME") or
           ln.startswith("| LEEP")}
    assert "[+0.100, +0.800]" in row["LOGME"] and "[0.0, 5.0]" in row["LOGME"] and "9/9" in row["LOGME"]
    assert "**2/9 partial**" in row["LEEP"]
    html = render_html(res)
    assert "[+0.100, +0.800]" in html and "<b>2/9 partial</b>" in html


def test_cli_json_intervals_on_request(tmp_path, capsys):
    import json

    from nctransfer.cli.main import main
    from test_transferability_rank import write_files

    files = write_files(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rc = main(["rank", *files, "--methods", "logme,leep", "--truth", str(tmp_path / "truth.csv"), "--json",
                   "--intervals"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    iv = out["evaluation_intervals"]["logme"]
    assert iv["n_scored"] == 3 and iv["coverage"] == 1.0
    assert iv["weighted_tau_lo"] <= out["evaluation"]["logme"]["weighted_tau"] <= iv["weighted_tau_hi"]


def test_vectorised_weighted_tau_equals_scipy_with_ties():
    from scipy.stats import weightedtau

    from nctransfer.transferability.uncertainty import _row_weighted_tau

    rng = np.random.default_rng(3)
    for M in (3, 7, 25):
        A = rng.integers(0, 4, size=(60, M)).astype(float)  # many ties, as bootstrap duplicates make
        B = rng.integers(0, 3, size=(60, M)).astype(float)
        A[:30] = rng.normal(size=(30, M))
        A[0] = 1.0  # a constant score: NaN
        ref = []
        for i in range(60):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ref.append(weightedtau(B[i], A[i]).statistic if np.ptp(A[i]) > 0 and np.ptp(B[i]) > 0 else np.nan)
        np.testing.assert_allclose(_row_weighted_tau(A, B), ref, atol=1e-12)
