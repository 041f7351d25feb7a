"""Every JSON file nctransfer writes is strict JSON: NaN and Inf are written as ``null``, never as the ``NaN`` /
``Infinity`` tokens that strict parsers (browsers' ``JSON.parse``, jq, Go, Rust) refuse. Checked on the one encoder
and on every file written by ``rank``, ``layers``, ``finetune`` and ``study`` (results, configurations, caches)."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest

from nctransfer.utils.io import dumps_json, to_jsonable, write_json_atomic

pytestmark = pytest.mark.usefixtures("one_thread")


def _refuse(token: str) -> None:
    raise ValueError(f"non-standard JSON constant {token!r}")


def strict_load(text: str) -> object:
    return json.loads(text, parse_constant=_refuse)


def check_tree(root: Path) -> int:
    """Parse every ``*.json`` under ``root`` strictly; return how many there are."""
    files = sorted(root.rglob("*.json"))
    for f in files:
        try:
            strict_load(f.read_text())
        except ValueError as exc:
            pytest.fail(f"{f.relative_to(root)} is not strict JSON: {exc}")
    return len(files)


def test_the_encoder_writes_null_for_nan_and_inf(tmp_path):
    obj = {"a": float("nan"), "b": np.float64("inf"), "c": np.array([1.0, np.nan]), "d": (-math.inf, 2),
           "e": {"f": np.float32("nan"), "g": np.int64(3)}, "p": Path("x/y")}
    expected = {"a": None, "b": None, "c": [1.0, None], "d": [None, 2], "e": {"f": None, "g": 3}, "p": "x/y"}
    assert strict_load(dumps_json(obj)) == expected
    assert to_jsonable(obj) == expected
    write_json_atomic(tmp_path / "x.json", obj)
    text = (tmp_path / "x.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert strict_load(text) == expected
    with pytest.raises(ValueError, match="non-standard"):
        strict_load('{"a": NaN}')  # the parser used below does refuse the tokens


def test_cache_entries_with_nan_are_strict_and_verified(tmp_path):
    from nctransfer.pipeline.cache import ResultCache

    cache = ResultCache(tmp_path)
    cache.put("x", {"k": 1}, {"acc": float("nan"), "hist": [1.0, math.inf]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a checksum mismatch would warn
        assert cache.get("x", {"k": 1}) == {"acc": None, "hist": [1.0, None]}
    assert check_tree(tmp_path) == 1


@pytest.fixture
def nan_method():
    """A registered transferability score that is always NaN (undefined), removed afterwards."""
    from nctransfer.transferability.base import METHODS, register

    @register("always_nan_test", title="always NaN", reference="none (test)", spec="none")
    def _score(X, y):  # noqa: ANN001, ANN202
        return float("nan")

    yield "always_nan_test"
    METHODS.pop("always_nan_test", None)


def test_rank_files_are_strict_json(tmp_path, nan_method):
    from nctransfer.pipeline import rank_models
    from test_pipeline_rank import tiny_arrays

    out = tmp_path / "out"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = rank_models(["timm:resnet10t", "timm:efficientnet_lite0"], tiny_arrays(), out=out,
                          cache_dir=tmp_path / "cache", methods=["logme", nan_method], pretrained=False,
                          image_size=32, per_class=None, test_per_class=None, probe_C_grid=(1.0,), progress=False)
    assert math.isnan(res.to_frame().loc["timm:resnet10t", nan_method])
    assert check_tree(out) >= 1 and check_tree(tmp_path / "cache") >= 1
    saved = strict_load((out / "results.json").read_text())
    assert saved["scores"]["timm:resnet10t"][nan_method] is None  # the NaN score went in as null


def test_layers_files_are_strict_json(tmp_path):
    from nctransfer.cli.main import main

    out = tmp_path / "out"
    rc = main(["layers", "--model", "timm:resnet10t", "--random-init", "--data", "digits", "--per-class", "6",
               "--image-size", "32", "--taps", "layer1,-1", "--c-grid", "1", "--out", str(out), "--no-plot",
               "--cache-dir", str(tmp_path / "cache"), "--threads", "1", "--quiet"])
    assert rc == 0
    assert check_tree(out) >= 2  # layers.json, config.json
    check_tree(tmp_path / "cache")


def test_finetune_files_are_strict_json(tmp_path, capsys):
    from nctransfer.cli.main import main

    out = tmp_path / "run"
    assert main(["finetune", "--model", "torchvision:resnet18", "--no-pretrained", "--data", "digits",
                 "--image-size", "32", "--epochs", "1", "--batch-size", "10", "--lr", "0.01", "--no-progress",
                 "--test-per-class", "2", "--per-class", "2", "--method", "lp", "--out", str(out), "--json"]) == 0
    strict_load(capsys.readouterr().out)  # --json output too
    assert check_tree(out) >= 3  # result.json, config.json, command.json


def test_study_files_are_strict_json(tmp_path, capsys):
    from nctransfer.cli.main import main

    grid = tmp_path / "g.yaml"
    grid.write_text("defaults: {arch: small_cnn, width: 4, depth: 2, epochs: 1, batch_size: 32}\n"
                    "recipes:\n  - {loss: ce}\n")
    out = tmp_path / "o"
    assert main(["study", "--source", "digits:0-4", "--target", "digits:5-9", "--grid", str(grid), "--out",
                 str(out), "--source-per-class", "10", "--source-test-per-class", "3", "--target-train-per-class",
                 "6", "--target-test-per-class", "3", "--image-size", "12", "--quiet", "--no-plots", "--methods",
                 "logme", "--threads", "1"]) == 0
    assert check_tree(out) >= 3  # study.json, study_config.json, cli_config.json, runs/*/result.json
