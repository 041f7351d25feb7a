"""nctransfer.layers: layer-wise collapse vs probe accuracy, and the `nctransfer layers` command."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from nctransfer.data import load_dataset
from nctransfer.exceptions import InputValueError
from nctransfer.layers import analyze, spearman
from nctransfer.metrics import nc1
from nctransfer.models import load_model


pytestmark = pytest.mark.usefixtures("one_thread_blas")  # one thread (tests/conftest.py)


def test_spearman_reference_values():
    rho, p, n = spearman([1, 2, 3, 4, 5], [5, 6, 7, 8, 7])
    assert n == 5 and rho == pytest.approx(0.8207826816681233) and 0 < p < 1
    assert spearman([1, 2, 3], [3, 2, 1])[0] == pytest.approx(-1.0)
    assert math.isnan(spearman([1, 2], [1, 2])[0])           # fewer than 3 pairs
    assert math.isnan(spearman([1, 1, 1, 1], [1, 2, 3, 4])[0])  # constant input
    assert spearman([1, float("nan"), 3, 4], [1, 9, 2, 5])[2] == 3


def test_analyze_digits_small(tmp_path):
    model = load_model("efficientnet_lite0")
    tr = load_dataset("digits", "train", model=model, image_size=32, per_class=12)
    te = load_dataset("digits", "test", model=model, image_size=32, per_class=12)
    res = analyze(model, tr, te, taps=["blocks.1.0", "blocks.3.1", "blocks.5.0", "penultimate"], C_grid=(1.0,),
                  cache_dir=tmp_path, progress=False)
    assert res.taps == ["blocks.1.0", "blocks.3.1", "blocks.5.0", "penultimate"]
    assert [r["dim"] for r in res.rows] == [24, 80, 192, 1280]
    for r in res.rows:
        for k in ("nc1", "vci", "cdnv", "nc2_etf_distance", "numerical_rank", "ncc_accuracy", "probe_accuracy",
                  "ncc_test_accuracy"):
            assert k in r
        assert 0 <= r["probe_accuracy"] <= 1 and r["probe_C"] == 1.0
    # metrics are those of the training features: recompute NC1 of one tap independently
    from nctransfer.extract import extract

    feats = extract(model, tr, ["blocks.3.1"], store_features=True, progress=False)["blocks.3.1"]
    assert res.rows[1]["nc1"] == pytest.approx(nc1(feats.features.astype(np.float64), feats.labels), rel=1e-6)
    rho = spearman(res.column("nc1"), res.column("probe_accuracy"))[0]
    assert res.correlations["spearman_nc1_accuracy"] == pytest.approx(rho, nan_ok=True)
    assert res.correlations["n_taps"] == 4 and "nc1" in res.metric_correlations
    d = res.to_dict()
    json.dumps(d, default=float)
    assert set(d) >= {"taps", "correlations"} and d["taps"][0]["tap"] == "blocks.1.0"
    text = res.table()
    assert "penultimate" in text and "spearman_nc1_accuracy" in text
    fig = res.plot(tmp_path / "l.png")
    assert (tmp_path / "l.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and fig is not None
    # second run: both splits served from the cache
    again = analyze(model, tr, te, taps=res.taps, C_grid=(1.0,), cache_dir=tmp_path, progress=False)
    assert again.info["train_from_cache"] and again.info["test_from_cache"]
    assert again.column("nc1") == res.column("nc1")
    no_probe = analyze(model, tr, te, taps=["penultimate", "blocks.1.0", "blocks.5.0"], probe=False,
                       progress=False)
    assert "probe_accuracy" not in no_probe.rows[0] and "spearman_nc1_ncc_accuracy" in no_probe.correlations
    with pytest.raises(InputValueError, match="threads"):
        analyze(model, tr, te, threads=0)


@pytest.mark.slow
def test_real_model_nc1_negatively_correlated_with_probe_accuracy():
    """Paper 000 figure 9: across the blocks of a pre-trained network, more collapse (lower NC1) goes with better
    linear-probe transfer. efficientnet_lite0 (real ImageNet weights) on a Fashion-MNIST subset."""
    from nctransfer.data import find_fashion_mnist

    try:
        find_fashion_mnist()
        name = "fashion-mnist"
    except LookupError:
        name = "digits"
    model = load_model("efficientnet_lite0")
    tr = load_dataset(name, "train", model=model, image_size=32, per_class=40)
    te = load_dataset(name, "test", model=model, image_size=32, per_class=30)
    res = analyze(model, tr, te, C_grid=(0.01, 1.0, 100.0), progress=False)
    assert len(res.rows) == 17
    rho = res.correlations["spearman_nc1_accuracy"]
    assert rho < -0.3, res.table()
    acc = res.column("probe_accuracy")
    assert max(acc) > 0.7 and acc[0] < max(acc)  # the first block transfers worse than the best one
    assert res.rows[0]["nc1"] > min(res.column("nc1")) * 2


@pytest.mark.slow
def test_cli_layers_writes_json_png_and_table(tmp_path, capsys):
    from nctransfer.cli.main import main

    out = tmp_path / "out"
    rc = main(["layers", "--model", "efficientnet_lite0", "--data", "digits", "--per-class", "10",
               "--image-size", "32", "--taps", "blocks.1.0,blocks.4.*,-1", "--c-grid", "1", "--out", str(out),
               "--cache-dir", str(tmp_path / "cache"), "--threads", "1", "--quiet"])
    assert rc == 0
    data = json.loads((out / "layers.json").read_text())
    assert [t["tap"] for t in data["taps"]] == ["blocks.1.0", "blocks.4.0", "blocks.4.1", "blocks.4.2",
                                                "penultimate"]
    for t in data["taps"]:
        assert {"tap", "dim", "nc1", "vci", "cdnv", "probe_accuracy"} <= set(t)
    assert "spearman_nc1_accuracy" in data["correlations"]
    assert (out / "layers.png").stat().st_size > 1000 and (out / "layers.csv").is_file()
    assert json.loads((out / "config.json").read_text())["options"]["per_class"] == 10
    capsys.readouterr()
    rc = main(["layers", "--model", "efficientnet_lite0", "--data", "digits", "--per-class", "10",
               "--image-size", "32", "--taps", "penultimate,blocks.0.0,blocks.6.0", "--no-probe", "--no-cache",
               "--out", str(tmp_path / "o2"), "--no-plot", "--threads", "1"])
    printed = capsys.readouterr().out
    assert rc == 0 and "penultimate" in printed and "ncc_test_accuracy" in printed
    assert not (tmp_path / "o2" / "layers.png").exists()


def test_cli_layers_errors(tmp_path, capsys):
    from nctransfer.cli.main import main

    assert main(["layers", "--model", "efficientnet_lite9", "--data", "digits", "--out", str(tmp_path)]) == 2
    assert "Did you mean" in capsys.readouterr().err
    assert main(["layers", "--model", "efficientnet_lite0", "--data", "digitz", "--out", str(tmp_path)]) == 2
    assert "unknown dataset" in capsys.readouterr().err
    assert main(["layers", "--model", "efficientnet_lite0", "--data", "digits", "--per-class", "0",
                 "--out", str(tmp_path)]) == 2
    assert "--per-class" in capsys.readouterr().err
