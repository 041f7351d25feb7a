"""The suite's pools from a pre-training study's checkpoints, and the fine-tuning ground truth with its standard error
(test set and seeds), on a tiny suite configuration."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from nctransfer.exceptions import InputValueError
from nctransfer.metrics import unpack_correct
from nctransfer.pipeline.benchmark import StudyPoolSpec, default_study_pool, format_suite_md, run_suite
from nctransfer.pipeline.study_pools import combine_seeds
from nctransfer.pretrain.study import StudyConfig

pytestmark = pytest.mark.usefixtures("one_thread_module")  # one thread (tests/conftest.py)

GRID = {"defaults": {"arch": "small_cnn", "width": 4, "depth": 2, "epochs": 1, "batch_size": 32},
        "product": {"loss": ["ce", "supcon"], "seed": [0, 1]}}
METHODS = ["logme", "ncti", "leep", "neg_nc1"]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    cfg = StudyConfig(source="digits:0-4", targets=["digits:5-9", "digits:0-4"],
                      out=str(tmp_path_factory.mktemp("study")), source_per_class=30, source_test_per_class=10,
                      target_train_per_class=20, target_test_per_class=10, image_size=12, plots=False,
                      methods=METHODS, threads=1)
    return StudyPoolSpec(name="study", config=cfg, grid=GRID)


def test_combine_seeds_by_hand():
    mean, se = combine_seeds([{"a": 0.8, "b": 0.5}, {"a": 0.6, "b": 0.5}], 100)
    assert mean == pytest.approx({"a": 0.7, "b": 0.5})
    # a: p(1-p)/n = 0.21/100 = 0.0021, s^2 = 0.02 (ddof 1), s^2/k = 0.01 -> sqrt(0.0121) = 0.11
    # b: no seed spread -> the binomial term alone, sqrt(0.25/100) = 0.05
    assert se == pytest.approx({"a": 0.11, "b": 0.05})
    assert combine_seeds([{"a": 0.9}], {"a": 25})[1]["a"] == pytest.approx(np.sqrt(0.09 / 25))
    with pytest.raises(InputValueError, match="n_test"):
        combine_seeds([{"a": 0.9}], 0)


def test_study_checkpoints_are_pools_with_probe_truth(study, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = run_suite([study], out=tmp_path, progress=False)
    assert set(res.pools) == {"study/digits:5-9", "study/digits:0-4"}
    records = json.loads((Path(study.config.out) / "study.json").read_text())["recipes"]
    names = [r["name"] for r in records]
    assert len(names) == 4  # 2 losses x 2 seeds
    for i, (pool_name, p) in enumerate(res.pools.items()):
        assert p["n_candidates"] == 4 and p["spec"]["models"] == names
        tr = p["truth"]
        assert tr["kind"] == "probe" and tr["noise"].startswith("per-sample")
        for r in records:  # the study keeps the probe's per-sample correctness: its mean is the accuracy
            c = unpack_correct(r["targets"][i]["probe_correct"])
            assert len(c) == r["targets"][i]["n_test"] == 50 and c.mean() == pytest.approx(tr["accuracy"][r["name"]])
        assert {"logme", "ncti", "neg_nc1"} <= set(p["evaluation"])
        assert p["intervals"]["logme"]["coverage"] == 1.0 and "weighted_tau_lo" in p["intervals"]["logme"]
        assert p["intervals"]["leep"]["n_scored"] == 2  # SupCon checkpoints have no source classifier: partial
        # the checkpoint's own source accuracy is the static baseline known for the CE checkpoints
        assert set(p["baselines"]["scores"]) == set(names)
        ce = [n for n in names if n.startswith("ce")]
        assert all(p["baselines"]["scores"][n]["source_accuracy"] == pytest.approx(
            next(r for r in records if r["name"] == n)["source"]["test_accuracy"]) for n in ce)
        assert "random" in p["baselines"]
    assert len(res.lopo) == 2
    md = (tmp_path / "benchmark.md").read_text()
    assert "## study/digits:5-9 (4 candidates)" in md and "Ground truth: probe (per-sample" in md
    assert md == format_suite_md(res)


def test_study_pools_with_finetuning_truth_over_seeds(study):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = run_suite([study], progress=False, truth="finetune",
                        truth_finetune={"epochs": 1, "lr": 0.05, "batch_size": 25}, truth_seeds=2)
    p = res.pools["study/digits:5-9"]
    tr = p["truth"]
    assert tr["kind"] == "finetune" and "2 seed" in tr["noise"]
    for name, d in tr["details"].items():
        accs = d["seed_accuracies"]
        assert d["method"] == "full_ft" and len(accs) == 2
        assert tr["accuracy"][name] == pytest.approx(np.mean(accs))
        m = np.mean(accs)
        assert tr["se"][name] == pytest.approx(np.sqrt(m * (1 - m) / 50 + np.var(accs, ddof=1) / 2))
    assert {"logme", "ncti"} <= set(p["evaluation"]) and "weighted_tau_hi" in p["intervals"]["ncti"]


def test_pool_of_models_with_finetuning_truth_over_seeds():
    """rank_models' fine-tuning truth (full FT of each model) run once per seed, combined and evaluated again."""
    from test_pipeline_rank import tiny_arrays

    from nctransfer.pipeline.benchmark import PoolSpec

    def arrays(seed):
        return tiny_arrays(n_per_class=16, seed=seed, noise=0.88, signal=0.12)

    pools = [PoolSpec("tiny", ("timm:resnet10t", "timm:efficientnet_lite0"),
                      lambda: {"train": arrays(0), "test": arrays(10)}, "penultimate", None, None, 32)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = run_suite(pools, methods=["logme"], cache_dir=None, progress=False, rank_options={"pretrained": False},
                        truth="finetune", truth_finetune={"epochs": 1, "batch_size": 16}, truth_seeds=2)
    p = res.pools["tiny"]
    tr = p["truth"]
    assert tr["kind"] == "finetune" and set(tr["accuracy"]) == {"timm:resnet10t", "timm:efficientnet_lite0"}
    for name, accs in tr["seed_accuracies"].items():
        m = np.mean(accs)
        assert len(accs) == 2 and tr["accuracy"][name] == pytest.approx(m)
        assert tr["se"][name] == pytest.approx(np.sqrt(m * (1 - m) / 48 + np.var(accs, ddof=1) / 2))
    assert "logme" in p["evaluation"] and "weighted_tau_lo" in p["intervals"]["logme"]
    assert p["baselines"]["scores"]["timm:resnet10t"]["params"] > 1e6  # parameter counts carried over


def test_default_study_pool_and_bad_arguments(tmp_path):
    spec = default_study_pool(tmp_path, quick=True)
    assert spec.config.out == str(tmp_path) and spec.grid["product"]["seed"] == [0, 1]
    assert len(spec.config.targets) >= 1
    with pytest.raises(InputValueError, match="truth"):
        run_suite([spec], truth="oracle")
    with pytest.raises(InputValueError, match="truth_seeds"):
        run_suite([spec], truth_seeds=0)
    with pytest.raises(InputValueError, match="PoolSpec"):
        run_suite(["layers/digits"])
    with pytest.raises(LookupError, match="nctransfer study"):
        run_suite([StudyPoolSpec(config=spec.config)])  # no grid and no study on disk


def test_cli_benchmark_study_pools_and_finetuning_truth(tmp_path, monkeypatch):
    import nctransfer.pipeline.benchmark as B
    from nctransfer.cli.main import main
    from nctransfer.pipeline.benchmark import SuiteResult

    seen = {}

    def fake_run_suite(pools, **kw):
        seen["pools"], seen["kw"] = pools, kw
        return SuiteResult()

    monkeypatch.setattr(B, "run_suite", fake_run_suite)
    assert main(["benchmark", "--quick", "--out", str(tmp_path / "o"), "--study", str(tmp_path / "s"), "--truth",
                 "finetune", "--truth-seeds", "2", "--truth-epochs", "3", "--no-progress"]) == 0
    study = [p for p in seen["pools"] if isinstance(p, StudyPoolSpec)]
    assert len(study) == 1 and study[0].config.out == str(tmp_path / "s")
    assert len(seen["pools"]) == len(B.default_pools(quick=True)) + 1
    assert seen["kw"]["truth"] == "finetune" and seen["kw"]["truth_seeds"] == 2
    assert seen["kw"]["truth_finetune"] == {"epochs": 3}
