"""``nctransfer finetune`` / ``finetune-sweep`` end to end on real data (scikit-learn digits, 32 px) with a random-
weight ResNet18, and the slow real test: the bundled ImageNet EfficientNet-Lite0 on a Fashion-MNIST subset."""

import json

import pandas as pd
import pytest

from test_finetune_fixtures import single_thread  # noqa: F401
from nctransfer.cli.main import main

TINY = ["--model", "torchvision:resnet18", "--no-pretrained", "--data", "digits", "--image-size", "32",
        "--epochs", "1", "--batch-size", "10", "--lr", "0.01", "--no-progress", "--test-per-class", "3"]


def test_cli_finetune_writes_result(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["finetune", *TINY, "--method", "scl", "--unit", "layer3.0", "--skip", "conv", "--per-class", "3",
                 "--out", str(out)]) == 0
    assert "scl_ft[layer3.0, conv]" in capsys.readouterr().out
    r = json.loads((out / "result.json").read_text())
    for key in ("test_accuracy", "penultimate_nc1", "trainable_params", "trainable_percent", "seconds_per_epoch",
                "peak_memory_mb", "history", "config", "environment"):
        assert key in r, key
    assert r["config"]["skip"] == "conv" and r["unit"] == "layer3.0" and r["n_train"] == 30
    assert r["environment"]["torch"] and len(r["history"]) == 1 and "penultimate_nc1" in r["history"][0]
    cmd = json.loads((out / "command.json").read_text())
    assert cmd["options"]["unit"] == "layer3.0" and (out / "checkpoint.pt").is_file()
    # --resume on a finished run returns its numbers without training again
    assert main(["finetune", *TINY, "--method", "scl", "--unit", "layer3.0", "--skip", "conv", "--per-class", "3",
                 "--out", str(out), "--resume", "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["test_accuracy"] == r["test_accuracy"] and again["epochs_completed"] == 1


def test_cli_yaml_config_and_errors(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("method: lp\nper-class: 2\nepochs: 1\n")
    assert main(["finetune", *TINY, "--config", str(cfg), "--out", str(tmp_path / "lp")]) == 0
    assert json.loads((tmp_path / "lp" / "result.json").read_text())["method"] == "linear_probe"
    capsys.readouterr()
    assert main(["finetune", *TINY, "--method", "layer", "--unit", "layer9.0", "--per-class", "2",
                 "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err
    assert "unknown unit 'layer9.0'" in err and "Valid units" in err
    assert main(["finetune", *TINY, "--method", "layer", "--per-class", "2", "--out", str(tmp_path / "b2")]) == 2
    assert "unit is required" in capsys.readouterr().err


def test_cli_sweep_table_plot_and_reuse(tmp_path, capsys):
    out = tmp_path / "sweep"
    args = ["finetune-sweep", *TINY, "--sizes", "10,20", "--methods", "lp,scl", "--unit", "4", "--min-steps", "3",
            "--out", str(out)]
    assert main(args) == 0
    table = pd.read_csv(out / "sweep.csv")
    assert list(table["size"]) == [10, 10, 20, 20] and list(table["method"]) == ["linear_probe", "scl_ft"] * 2
    assert table.loc[table.method == "scl_ft", "unit"].tolist() == ["layer3.0"] * 2
    assert (out / "sweep.png").stat().st_size > 1000 and "| size |" in (out / "sweep.md").read_text()
    assert (table["batch_size"] == 10).all() and list(table["unit"]) == ["-", "layer3.0"] * 2
    assert list(table["epochs"]) == [3, 3, 2, 2]  # at least 3 optimiser steps: 1 or 2 steps per epoch
    stamp = (out / "runs" / "n20_scl" / "result.json").stat().st_mtime_ns
    capsys.readouterr()
    assert main(args) == 0  # finished runs are reused, not retrained
    assert (out / "runs" / "n20_scl" / "result.json").stat().st_mtime_ns == stamp
    assert pd.read_csv(out / "sweep.csv").equals(table)


def test_sweep_subsets_are_nested_and_balanced():
    import numpy as np

    from nctransfer.finetune.sweep import nested_subset_indices

    y = np.repeat(np.arange(10), 30)
    prev = set()
    for n in (10, 24, 59, 142):
        idx = nested_subset_indices(y, n, "total", seed=0)
        counts = np.bincount(y[idx], minlength=10)
        assert len(idx) == n and counts.max() - counts.min() <= 1
        assert prev <= set(idx.tolist())
        prev = set(idx.tolist())
    with pytest.raises(Exception, match="training set has 300"):
        nested_subset_indices(y, 301, "total")


@pytest.mark.slow
def test_real_efficientnet_lite0_fashion_mnist_every_method(tmp_path):
    """The bundled ImageNet weights on 10 Fashion-MNIST images per class, 1 epoch per method (32 px)."""
    from nctransfer.data import find_fashion_mnist
    from nctransfer.exceptions import NotFoundError

    try:
        find_fashion_mnist()
    except NotFoundError:
        pytest.skip("Fashion-MNIST IDX files not installed (Debian package dataset-fashion-mnist)")
    from nctransfer.finetune import finetune

    results = {}
    for method, unit in (("lp", None), ("layer", "blocks.5.0"), ("scl", "blocks.5.0"), ("full", None)):
        results[method] = finetune("efficientnet_lite0", "fashion-mnist", "fashion-mnist", method=method, unit=unit,
                                   per_class=10, test_per_class=10, image_size=32, epochs=1, batch_size=20,
                                   lr=0.05, backbone_lr=0.01, progress=False, out_dir=tmp_path / method)
    for method, r in results.items():
        assert 0.0 <= r.test_accuracy <= 1.0 and r.penultimate_nc1 > 0 and r.n_test == 100, method
        assert (tmp_path / method / "result.json").is_file()
    assert results["lp"].trainable_params == 1280 * 10 + 10
    assert results["scl"].trainable_percent == pytest.approx(7.00, abs=0.01)
    assert results["full"].trainable_percent == 100.0
    assert results["scl"].test_accuracy > 0.2  # well above chance (0.1) after one epoch with real features
