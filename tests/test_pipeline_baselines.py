"""Static baselines (depth, width, parameter count, source accuracy) and the random score on a tiny pool."""

import pytest

from nctransfer.pipeline.baselines import (
    baseline_verdicts,
    evaluate_baselines,
    source_accuracy,
    static_baseline_scores,
)


def _pool():
    # two models x three taps; the truth rises with depth, and the bigger model is better at every depth
    cands, truth = [], {}
    for mi, (model, dims) in enumerate((("efficientnet_lite0", (16, 40, 1280)), ("efficientnet_lite2", (24, 48, 1280)))):
        for t in range(3):
            name = f"{model}@{t}"
            cands.append({"name": name, "model": model, "tap_index": t, "n_taps": 3, "dim": dims[t]})
            truth[name] = 0.5 + 0.15 * t + 0.02 * mi
    cands.append({"name": "random:efficientnet_lite0@2", "model": "random:efficientnet_lite0", "tap_index": 2,
                  "n_taps": 3, "dim": 1280, "control": True})
    truth["random:efficientnet_lite0@2"] = 0.3
    return cands, truth


def test_static_baseline_values():
    cands, _ = _pool()
    df = static_baseline_scores(cands, params={"efficientnet_lite0": 4_600_000, "efficientnet_lite2": 6_100_000})
    assert df.loc["efficientnet_lite0@1", "depth"] == 0.5 and df.loc["efficientnet_lite2@2", "depth"] == 1.0
    assert df.loc["efficientnet_lite2@0", "width"] == 24
    assert df.loc["efficientnet_lite2@0", "params"] == 6_100_000
    assert df.loc["random:efficientnet_lite0@2", "params"] != df.loc["random:efficientnet_lite0@2", "params"]  # NaN
    assert df.loc["efficientnet_lite0@0", "source_accuracy"] == pytest.approx(0.751)
    assert source_accuracy("random:efficientnet_lite0") == pytest.approx(0.001)
    assert source_accuracy("timm:resnet18") != source_accuracy("timm:resnet18")  # unknown: NaN


def test_baselines_evaluated_and_verdicts():
    cands, truth = _pool()
    b = evaluate_baselines(cands, truth, params={"efficientnet_lite0": 4_600_000, "efficientnet_lite2": 6_100_000},
                           n_boot=100)
    ev = b["evaluation"]
    assert set(ev) == {"depth", "width", "params", "source_accuracy"}
    assert ev["depth"]["weighted_tau"] > 0.5  # depth alone orders this pool well
    assert ev["params"]["n_scored"] == 6 and ev["params"]["coverage"] == pytest.approx(6 / 7)
    assert abs(b["random"]["weighted_tau_mean"]) < 0.15
    # a perfect score beats everything; an inverted one beats nothing
    evaluation = {"perfect": {"weighted_tau": 1.0}, "inverted": {"weighted_tau": -1.0}, "none": {}}
    v = baseline_verdicts(evaluation, b)
    assert v["perfect"]["beats_random"] is True and v["perfect"]["not_beaten"] == []
    assert "beats every static baseline" in v["perfect"]["verdict"]
    assert v["inverted"]["beats_random"] is False and "depth" in v["inverted"]["not_beaten"]
    assert "does not beat a random score" in v["inverted"]["verdict"]
    assert v["none"]["beats_random"] is None


def test_report_states_baselines_and_losers():
    from nctransfer.reports import render_markdown
    from test_reports_render import make_results

    res = make_results()
    cands = res["candidates"]
    b = evaluate_baselines(cands, res["truth"]["accuracy"], n_boot=50)
    b["verdicts"] = baseline_verdicts({"logme": {"weighted_tau": -0.9}}, b)
    res["baselines"] = b
    md = render_markdown(res)
    assert "Static baselines (weighted τ [95% CI]): depth" in md
    assert "A random score: weighted τ" in md
    assert "LOGME does not beat a random score" in md
