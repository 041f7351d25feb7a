"""``nctransfer demo`` (= ``make demo``) on reduced settings: real bundled weights, real data (digits), every stage
(ranking, layer-wise collapse, linear probe vs SCL FT, report), then the same run served from the cache."""

from __future__ import annotations

import json
import warnings

import pytest

from nctransfer.cli.main import main
from nctransfer.pipeline.demo import DEMO_DEFAULTS, default_data, format_summary

ARGS = ["--models", "efficientnet_lite0,random:efficientnet_lite0", "--data", "digits", "--taps", "all",
        "--per-class", "8", "--test-per-class", "6", "--image-size", "32", "--epochs", "1", "--unit", "blocks.5.0",
        "--quiet"]


def test_demo_defaults_are_the_issue_pool():
    assert DEMO_DEFAULTS["models"] == ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2",
                                       "random:efficientnet_lite0"]
    assert DEMO_DEFAULTS["taps"] == "all" and DEMO_DEFAULTS["compare_finetune"] is True
    assert DEMO_DEFAULTS["out"] == "runs/demo"
    assert default_data() in ("fashion-mnist", "digits")


@pytest.mark.slow
def test_demo_end_to_end_then_cached(tmp_path, capsys):
    out = tmp_path / "demo"
    cache = tmp_path / "cache"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rc = main(["demo", *ARGS, "--out", str(out), "--cache-dir", str(cache)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "Ranking by" in printed and "Layer-wise collapse" in printed and "Fine-tuning efficientnet_lite0" in printed
    assert f"Report: {(out / 'report.html').resolve().as_uri()}" in printed
    for f in ("results.json", "scores.csv", "report.html", "report.md", "config.yaml", "figures/summary.png",
              "figures/layers_nc1.png", "figures/finetune.png"):
        assert (out / f).is_file(), f
    res = json.loads((out / "results.json").read_text())
    assert res["finetune"]["model"] == "efficientnet_lite0"  # the control is never the one fine-tuned
    assert set(res["finetune"]["methods"]) == {"linear_probe", "scl_ft"}
    scl = res["finetune"]["methods"]["scl_ft"]
    assert scl["unit"] == "blocks.5.0" and 0 < scl["trainable_percent"] < 10.0
    lp = res["finetune"]["methods"]["linear_probe"]
    assert lp["trainable_percent"] < scl["trainable_percent"]
    assert set(res["layers"]) == {"efficientnet_lite0", "random:efficientnet_lite0"}
    assert len(res["layers"]["efficientnet_lite0"]["taps"]) == 17
    assert res["config"]["cli"]["per_class"] == 8
    # second run: everything from the cache, same numbers
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rc = main(["demo", *ARGS, "--out", str(tmp_path / "again"), "--cache-dir", str(cache)])
    assert rc == 0
    again = json.loads((tmp_path / "again" / "results.json").read_text())
    assert again["scores"] == res["scores"] and again["finetune"] == res["finetune"]
    assert {"extract features", "transferability scores", "ground truth (linear probe)",
            "fine-tuning (linear probe vs SCL FT)"} <= set(again["timings_cached"]) | {"extract features"}
    assert all(v["from_cache"] for v in again["extraction"].values())
    assert "Fine-tuning" in format_summary(again)
