"""The Ray backend of rank_models: a local Ray instance (2 CPUs) gives the local backend's results; failed tasks
(an error, a killed worker) are retried and reported; the shared cache stays valid."""

from __future__ import annotations

import json
import os
import sys

import pytest

pytestmark = [pytest.mark.ray, pytest.mark.slow]

OPTS = dict(data="digits", per_class=5, test_per_class=3, image_size=32, batch_size=16,
            methods="logme,hscore,ncti,sfda", progress=False, probe_C_grid=(1.0,))


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray", reason="the Ray backend needs ray (pip install 'nctransfer[ray]')")
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the failure hooks below travel by value
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}})
    try:
        yield ray
    finally:
        ray.shutdown()


def _same_results(a, b):
    assert a["ranking"] == b["ranking"]
    assert a["truth"]["accuracy"] == pytest.approx(b["truth"]["accuracy"], rel=1e-9)
    assert set(a["scores"]) == set(b["scores"])
    for name, scores in a["scores"].items():
        for method, value in scores.items():
            other = b["scores"][name][method]
            assert (value is None and other is None) or other == pytest.approx(value, rel=1e-9, abs=1e-12), \
                (name, method)
    for name, metrics in a["collapse"].items():
        for k, v in metrics.items():
            if v is not None:
                assert b["collapse"][name][k] == pytest.approx(v, rel=1e-9, abs=1e-12), (name, k)


def test_ray_backend_equals_local(local_ray, tmp_path):
    """``nctransfer rank --backend ray`` on a local Ray instance gives the local backend's results."""
    from nctransfer.cli.main import main
    from nctransfer.pipeline import rank_models

    models = ["efficientnet_lite0", "random:efficientnet_lite0"]
    opts = {k: v for k, v in OPTS.items() if k != "probe_C_grid"}  # the CLI's default probe grid
    local = rank_models(models, cache_dir=tmp_path / "c1", **opts)
    out = tmp_path / "out"
    assert main(["rank", "--models", ",".join(models), "--data", "digits", "--per-class", "5", "--test-per-class",
                 "3", "--image-size", "32", "--batch-size", "16", "--methods", OPTS["methods"], "--quiet",
                 "--backend", "ray", "--cache-dir", str(tmp_path / "c2"), "--out", str(out)]) == 0
    remote = json.loads((out / "results.json").read_text())
    assert remote["config"]["cli"]["backend"] == "ray"
    assert all(remote["extraction"][m]["attempts"] == 1 and remote["extraction"][m]["backend"] == "ray"
               for m in models)
    _same_results(local, remote)
    assert local_ray.is_initialized()  # an instance the caller started is left running


def _fail_once(marker, kind, module, args):
    """Forward pre-hook: on the second forward pass of the first attempt, fail (raise, or kill the worker)."""
    module._calls = getattr(module, "_calls", 0) + 1
    if module._calls >= 2 and not os.path.exists(marker):
        open(marker, "w").close()
        if kind == "kill":
            os._exit(1)  # the worker dies in the middle of its extraction
        raise RuntimeError("injected failure")


def test_failed_and_killed_tasks_are_retried_and_the_cache_stays_valid(local_ray, tmp_path):
    from functools import partial

    from nctransfer.extract.store import CacheEntry
    from nctransfer.models import load_model
    from nctransfer.pipeline import rank_models

    def models(hooked):
        a, b = load_model("efficientnet_lite0"), load_model("efficientnet_lite1")
        if hooked:
            a.register_forward_pre_hook(partial(_fail_once, str(tmp_path / "raised"), "raise"))
            b.register_forward_pre_hook(partial(_fail_once, str(tmp_path / "killed"), "kill"))
        return [a, b]

    remote = rank_models(models(True), cache_dir=tmp_path / "c2", backend="ray", **OPTS)
    assert (tmp_path / "raised").exists() and (tmp_path / "killed").exists()
    assert remote["extraction"]["efficientnet_lite0"]["attempts"] == 2
    assert remote["extraction"]["efficientnet_lite1"]["attempts"] == 2
    retried = [w for w in remote["warnings"] if "retried" in w]
    assert any("injected failure" in w for w in retried) and len(retried) == 2
    manifests = list((tmp_path / "c2" / "features").rglob("manifest.json"))
    assert len(manifests) == 4  # (2 models) x (train, test)
    for mf in manifests:
        entry = CacheEntry.open(mf.parent)
        assert entry is not None and entry.complete and entry.verify()
    local = rank_models(models(False), cache_dir=tmp_path / "c1", **OPTS)
    _same_results(local, remote)


def test_ray_backend_rejects_bad_backend():
    from nctransfer.exceptions import InputValueError
    from nctransfer.pipeline import rank_models

    with pytest.raises(InputValueError, match="backend"):
        rank_models(["efficientnet_lite0"], "digits", backend="spark")


def test_missing_ray_names_the_extra(monkeypatch):
    from nctransfer.pipeline.ray_backend import require_ray
    from nctransfer.utils.extras import MissingExtraError

    monkeypatch.setattr("nctransfer.utils.extras.missing_modules", lambda mods: list(mods))
    with pytest.raises(MissingExtraError, match=r"pip install 'nctransfer\[ray\]'"):
        require_ray()


def test_finetune_sweep_on_ray_equals_local(local_ray, tmp_path):
    import pandas as pd
    import torch

    from nctransfer.cli.main import main

    torch.set_num_threads(1)
    tiny = ["finetune-sweep", "--model", "torchvision:resnet18", "--no-pretrained", "--data", "digits",
            "--image-size", "32", "--epochs", "1", "--batch-size", "10", "--lr", "0.01", "--no-progress",
            "--test-per-class", "3", "--sizes", "10,20", "--methods", "lp,scl", "--unit", "4"]
    assert main([*tiny, "--out", str(tmp_path / "local")]) == 0
    assert main([*tiny, "--out", str(tmp_path / "ray"), "--backend", "ray"]) == 0
    a = pd.read_csv(tmp_path / "local" / "sweep.csv")
    b = pd.read_csv(tmp_path / "ray" / "sweep.csv")
    cols = ["size", "n_train", "method", "unit", "trainable_params", "batch_size", "epochs"]
    pd.testing.assert_frame_equal(a[cols], b[cols])
    assert b["test_accuracy"].tolist() == pytest.approx(a["test_accuracy"].tolist(), abs=1e-9)
    assert b["penultimate_nc1"].tolist() == pytest.approx(a["penultimate_nc1"].tolist(), rel=1e-6, nan_ok=True)
    assert b["penultimate_nc1"].notna().sum() == 2  # size 20: defined (size 10: one sample per class)


def test_study_on_ray_equals_local(local_ray, tmp_path):
    import torch

    from nctransfer.pretrain.study import StudyConfig, run_study

    torch.set_num_threads(1)
    grid = {"defaults": {"arch": "small_cnn", "width": 4, "depth": 2, "epochs": 1, "batch_size": 32},
            "product": {"loss": ["ce", "supcon"]}}

    def config(out):
        return StudyConfig(source="digits:0-4", targets=["digits:5-9"], out=str(out), source_per_class=20,
                           source_test_per_class=5, target_train_per_class=10, target_test_per_class=5,
                           image_size=12, plots=False, methods=["logme", "ncti", "gbc"], threads=1)

    local = run_study(grid, config(tmp_path / "local"), progress=False)
    remote = run_study(grid, config(tmp_path / "ray"), progress=False, backend="ray")
    assert remote.status == {"ce-h0": "trained", "supcon-h0": "trained"} == local.status
    assert [r["name"] for r in remote.records] == [r["name"] for r in local.records]
    a = json.loads((tmp_path / "local" / "study.json").read_text())["pool_scores"]
    b = json.loads((tmp_path / "ray" / "study.json").read_text())["pool_scores"]
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    again = run_study(grid, config(tmp_path / "ray"), progress=False, backend="ray")  # finished recipes reused
    assert again.status == {"ce-h0": "skipped", "supcon-h0": "skipped"}


SELECT_MODELS = ["efficientnet_lite0", "random:efficientnet_lite0", "efficientnet_lite1"]


def test_select_on_ray_equals_local(local_ray, tmp_path, monkeypatch):
    """``nctransfer select --backend ray``: the scoring and the fine-tuning runs of every round are Ray tasks; the
    scores, the accuracies of every run, the rounds and the choice equal the local backend's (same seeds)."""
    import importlib

    import torch

    from nctransfer.cli.main import main

    torch.set_num_threads(1)
    select = importlib.import_module("nctransfer.pipeline.select").select
    # 3 candidates, budget 7: round 0 runs all 3 for 1 epoch, round 1 the best 2 for 2 epochs (cost 3 + 4)
    local = select(SELECT_MODELS, "digits", budget=7, target="lp", per_class=7, test_per_class=3, image_size=32,
                   out=tmp_path / "local", progress=False, rank_options={"cache_dir": tmp_path / "c1"}).to_dict()
    monkeypatch.setenv("NCTRANSFER_CACHE", str(tmp_path / "c2" / "features"))  # the CLI's default cache root
    out = tmp_path / "ray"
    assert main(["select", "--models", ",".join(SELECT_MODELS), "--data", "digits", "--budget", "7", "--method", "lp",
                 "--per-class", "7", "--test-per-class", "3", "--image-size", "32", "--no-progress", "--quiet",
                 "--backend", "ray", "--out", str(out)]) == 0
    remote = json.loads((out / "select.json").read_text())
    assert remote["config"]["backend"] == "ray" and local["config"]["backend"] == "local"
    assert remote["warnings"] == [] and remote["cost"] == local["cost"] == 7
    assert remote["plan"] == local["plan"] and remote["plan"]["rounds"] == [[3, 1], [2, 2]]
    assert remote["scores"] == pytest.approx(local["scores"], rel=1e-9)
    assert [(r["candidate"], r["resource"], r["reused"]) for r in remote["runs"]] == \
        [(r["candidate"], r["resource"], r["reused"]) for r in local["runs"]]
    assert [r["accuracy"] for r in remote["runs"]] == pytest.approx([r["accuracy"] for r in local["runs"]], abs=1e-12)
    assert [(s["candidates"], s["kept"]) for s in remote["stages"]] == [(s["candidates"], s["kept"])
                                                                        for s in local["stages"]]
    assert remote["chosen"] == local["chosen"]
    ledger = json.loads((out / "select_runs.json").read_text())["runs"]
    assert len(ledger) == 5 and all((out / "runs" / f"{k.replace(':', '_').replace('|', '_e')}").is_dir()
                                    for k in ledger)
    # started again: every run comes from the ledger, none is submitted to Ray
    assert main(["select", "--config", str(out / "config.yaml"), "--json"]) == 0
    again = json.loads((out / "select.json").read_text())
    assert all(r["reused"] for r in again["runs"]) and again["chosen"] == local["chosen"]


def _accuracy_after(marker, name, r):
    """A synthetic run (accuracy grows with the resource) whose first call for ``b`` at 2 epochs fails once."""
    if name == "b" and r == 2 and not os.path.exists(marker):
        open(marker, "w").close()
        raise RuntimeError("injected failure")
    return {"a": 0.70, "b": 0.90, "c": 0.80, "d": 0.60}[name] - 0.1 / r


def test_select_rounds_on_ray_retry_a_failed_run(local_ray, tmp_path):
    from functools import partial

    from nctransfer.pipeline.select import successive_halving

    scores = {"a": 4.0, "b": 1.0, "c": 3.0, "d": 2.0}
    (tmp_path / "no-failure").touch()
    local = successive_halving(scores, partial(_accuracy_after, str(tmp_path / "no-failure")), budget=14)
    with pytest.warns(RuntimeWarning, match="injected failure"):
        remote = successive_halving(scores, partial(_accuracy_after, str(tmp_path / "failed")), budget=14,
                                    backend="ray", out=tmp_path / "o")
    assert (tmp_path / "failed").exists()
    assert len(remote.warnings) == 1 and "'b (2 epoch(s))' failed" in remote.warnings[0]
    assert (remote.chosen, remote.cost) == (local.chosen, local.cost) == ("b", 8)
    assert remote.stages == local.stages and [s["kept"] for s in local.stages] == [["b", "c"], ["b"]]
    assert [(r["candidate"], r["resource"], r["accuracy"]) for r in remote.runs] == \
        [(r["candidate"], r["resource"], r["accuracy"]) for r in local.runs]
    assert len(json.loads((tmp_path / "o" / "select_runs.json").read_text())["runs"]) == 6
