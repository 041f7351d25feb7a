"""The pre-training study runner and ``nctransfer study``: outputs, resume, errors, the benchmark's quick form."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import nctransfer.pretrain.study as study_mod
from nctransfer.cli.main import main as cli_main
from nctransfer.exceptions import InputValueError, NotFoundError
from nctransfer.metrics import METRICS
from nctransfer.pretrain import StudyGrid, load_study_data, pretrain
from nctransfer.pretrain.datasets import parse_classes, parse_spec
from nctransfer.pretrain.study import StudyConfig, run_study
from nctransfer.transferability import METHODS

ROOT = Path(__file__).resolve().parents[1]
TINY = {"arch": "small_cnn", "width": 4, "depth": 2, "epochs": 2, "batch_size": 32}
GRID = {"defaults": TINY, "product": {"loss": ["ce", "supcon"], "head_layers": [0, 1]}}


pytestmark = pytest.mark.usefixtures("one_thread_module")  # one thread (tests/conftest.py)


# every method except NLEEP (a Gaussian mixture of 5K components: ~10 s per call on a loaded 2-core machine)
FAST_METHODS = [m for m in METHODS if m != "nleep"]


def _config(out: Path, **kw) -> StudyConfig:
    base = dict(source="digits:0-4", targets=["digits:5-9"], out=str(out), source_per_class=30,
                source_test_per_class=10, target_train_per_class=20, target_test_per_class=10, image_size=12,
                plots=False, methods=FAST_METHODS, threads=1)
    base.update(kw)
    return StudyConfig(**base)


def test_study_outputs_every_metric_tap_and_score(tmp_path):
    res = run_study(GRID, _config(tmp_path / "s", plots=True), progress=False)
    out = tmp_path / "s"
    assert res.status == {"ce-h0": "trained", "ce-h1": "trained", "supcon-h0": "trained", "supcon-h1": "trained"}
    data = json.loads((out / "study.json").read_text())
    assert data["complete"] is True and len(data["recipes"]) == 4
    rec = data["recipes"][0]
    # source: every metric at every tap (blocks, then the encoder output)
    assert rec["source"]["taps"] == ["block1", "block2", "penultimate"]
    stats_metrics = {n for n, m in METRICS.items() if not m.requires}
    for tap, values in rec["source"]["layers"].items():
        assert stats_metrics <= set(values), tap
    assert "nc3" in rec["source"]["layers"]["penultimate"]  # CE without head: classifier reads the encoder
    assert "nc3" not in data["recipes"][1]["source"]["layers"]["penultimate"]  # with a head it does not
    # target: probe accuracy in [0, 1], NC1, every score; LEEP/NCE need the source classifier
    tgt = rec["targets"][0]
    assert 0 <= tgt["probe_accuracy"] <= 1 and tgt["layers"]["penultimate"]["nc1"] > 0
    assert set(tgt["scores"]) == set(FAST_METHODS)
    assert all(np.isfinite(v) for v in tgt["scores"].values()), tgt["skipped_scores"]
    sup = next(r for r in data["recipes"] if r["name"] == "supcon-h1")["targets"][0]
    assert {"leep", "nce"} <= set(sup["skipped_scores"]) and "leep" not in sup["scores"]
    assert "ncti" in sup["scores"]  # pool-relative scores are combined across the recipes
    # CSV: one row per recipe and target, with the flat columns
    rows = list(csv.DictReader((out / "study.csv").open()))
    assert [r["recipe"] for r in rows] == ["ce-h0", "ce-h1", "supcon-h0", "supcon-h1"]
    assert {"source_nc1", "probe_accuracy", "target_nc1", "score_logme", "score_leep"} <= set(rows[0])
    assert float(rows[0]["source_nc1"]) == pytest.approx(rec["source"]["layers"]["penultimate"]["nc1"])
    # figures are PNG files
    for name in ("nc1_layers.png", "head_depth.png", "source_nc1_vs_accuracy.png", "target_nc1_vs_accuracy.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name


def test_study_interrupted_mid_grid_resumes_without_redoing(tmp_path, monkeypatch):
    calls: list[str] = []
    real = study_mod.pretrain

    def counting(recipe, *a, **k):
        calls.append(recipe.name)
        return real(recipe, *a, **k)

    monkeypatch.setattr(study_mod, "pretrain", counting)
    cfg = _config(tmp_path / "s")
    first = run_study(GRID, cfg, progress=False, max_recipes=1)
    assert first.status == {"ce-h0": "trained"} and calls == ["ce-h0"]
    assert json.loads((tmp_path / "s" / "study.json").read_text())["complete"] is False
    saved = (tmp_path / "s" / "runs" / "ce-h0" / "result.json").read_text()

    # a crash while evaluating the second recipe (after its checkpoint was written)
    real_eval = study_mod.evaluate_model

    def crash(model, *a, **k):
        if model.recipe.name == "ce-h1":
            raise KeyboardInterrupt
        return real_eval(model, *a, **k)

    monkeypatch.setattr(study_mod, "evaluate_model", crash)
    with pytest.raises(KeyboardInterrupt):
        run_study(GRID, cfg, progress=False)
    assert calls == ["ce-h0", "ce-h1"]
    monkeypatch.setattr(study_mod, "evaluate_model", real_eval)

    calls.clear()
    final = run_study(GRID, cfg, progress=False)
    assert final.status == {"ce-h0": "skipped", "ce-h1": "reused", "supcon-h0": "trained", "supcon-h1": "trained"}
    assert calls == ["ce-h1", "supcon-h0", "supcon-h1"]
    ce_h1 = next(r for r in final.records if r["name"] == "ce-h1")
    assert [h["epoch"] for h in ce_h1["history"]] == [0, 1]  # its checkpoint was complete: not retrained
    old, new = json.loads(saved), json.loads((tmp_path / "s" / "runs" / "ce-h0" / "result.json").read_text())
    assert old["source"] == new["source"] and old["history"] == new["history"]
    # nothing left to do
    calls.clear()
    again = run_study(GRID, cfg, progress=False)
    assert calls == [] and set(again.status.values()) == {"skipped"}


def test_study_resumes_a_recipe_interrupted_mid_training(tmp_path):
    cfg = _config(tmp_path / "s")
    grid = StudyGrid.from_dict({"recipes": [{**TINY, "epochs": 3, "name": "ce-h0"}]})
    src = load_study_data(cfg.source, image_size=cfg.image_size, train_per_class=cfg.source_per_class,
                          test_per_class=cfg.source_test_per_class, seed=cfg.seed)
    ckpt = tmp_path / "s" / "runs" / "ce-h0" / "checkpoint.pt"
    pretrain(grid.recipes[0], src.X_train, src.y_train, checkpoint=ckpt, progress=False, max_epochs=1)
    res = run_study(grid, cfg, progress=False)
    assert res.status == {"ce-h0": "resumed"}
    assert [h["epoch"] for h in res.records[0]["history"]] == [0, 1, 2]


def test_study_refuses_other_data_settings_in_same_dir(tmp_path):
    run_study({"recipes": [TINY]}, _config(tmp_path / "s"), progress=False)
    with pytest.raises(InputValueError, match=r"other data settings \(changed: \['source_per_class'\]"):
        run_study({"recipes": [TINY]}, _config(tmp_path / "s", source_per_class=20), progress=False)


def test_dataset_specs():
    assert parse_classes("0-2,7") == [0, 1, 2, 7]
    assert parse_spec("fashion-mnist:5-9") == ("fashion-mnist", [5, 6, 7, 8, 9])
    assert parse_spec("digits") == ("digits", None)
    with pytest.raises(InputValueError, match="descending"):
        parse_classes("4-0")
    with pytest.raises(InputValueError, match=r"classes \[12\] do not exist"):
        load_study_data("digits:0,12")
    with pytest.raises(NotFoundError, match="unknown dataset"):
        load_study_data("not-a-dataset")
    d = load_study_data("digits:5-9", train_per_class=7, test_per_class=3, image_size=28)
    assert d.X_train.shape == (35, 1, 28, 28) and d.classes == [5, 6, 7, 8, 9]
    assert float(d.X_train.min()) >= 0 and float(d.X_train.max()) <= 1  # digits rescaled from [0, 16]
    assert sorted(set(d.y_test.tolist())) == [5, 6, 7, 8, 9] and len(d.y_test) == 15


def test_cli_study_end_to_end_and_errors(tmp_path, capsys):
    grid = tmp_path / "g.yaml"
    grid.write_text("defaults: {arch: small_cnn, width: 4, depth: 2, epochs: 1, batch_size: 32}\n"
                    "recipes:\n  - {loss: ce}\n  - {loss: mse}\n")
    args = ["study", "--source", "digits:0-4", "--target", "digits:5-9", "--grid", str(grid), "--out",
            str(tmp_path / "o"), "--source-per-class", "20", "--source-test-per-class", "5",
            "--target-train-per-class", "10", "--target-test-per-class", "5", "--image-size", "12", "--quiet",
            "--no-plots", "--methods", "logme", "leep", "ncti", "--threads", "1"]
    assert cli_main(args + ["--dry-run"]) == 0
    assert "2 recipe(s)" in capsys.readouterr().out
    assert cli_main(args) == 0
    out = capsys.readouterr().out
    assert "ce-h0" in out and "mse-h0" in out and "trained" in out
    assert (tmp_path / "o" / "study.csv").is_file() and (tmp_path / "o" / "cli_config.json").is_file()
    assert cli_main(args) == 0
    assert "skipped" in capsys.readouterr().out
    # bad input: clear messages, exit code 2
    bad = tmp_path / "bad.yaml"
    for text, match in [("", "is empty"), ("recipes:\n  - {loss: focal}\n", "loss must be one of"),
                        ("recipes:\n  - {heads: 2}\n", "unknown recipe key 'heads'"),
                        ("product:\n  adv_eps: [2]\n", r"must lie in \[0, 1\]")]:
        bad.write_text(text)
        assert cli_main(args[:6] + [str(bad)] + args[7:]) == 2
        assert match.split("\\")[0] in capsys.readouterr().err
    assert cli_main(args[:6] + [str(tmp_path / "missing.yaml")] + args[7:]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_example_grids_are_valid():
    full = StudyGrid.from_yaml(ROOT / "examples" / "study_grid.yaml")
    assert len(full) >= 12
    losses = {r.loss for r in full}
    assert {"ce", "mse", "supcon"} <= losses
    assert {r.head_layers for r in full} >= {0, 1, 2}
    assert len({r.augment for r in full}) >= 3
    assert len({round(r.adv_eps * 255) for r in full if r.adv_eps > 0}) >= 2
    assert len(StudyGrid.from_yaml(ROOT / "examples" / "study_grid_ci.yaml")) == 2


@pytest.mark.slow
def test_benchmark_quick_form(tmp_path):
    spec = importlib.util.spec_from_file_location("study_bench", ROOT / "benchmarks" / "study_fashion_mnist.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    n = torch.get_num_threads()
    try:
        assert mod.main(["--quick", "--out", str(tmp_path / "b"), "--quiet", "--threads", "1"]) == 0
    finally:
        torch.set_num_threads(n)
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert summary["standard"]["random_init"]["name"] == "random-init"
    assert summary["standard"]["status"] == {"ce-h0": "trained", "ce-h2": "trained"}
    assert summary["few-shot"]["status"] == {"ce-h0": "reused", "ce-h2": "reused"}  # evaluated, not retrained
    assert "| ce-h2 |" in (tmp_path / "b" / "summary.md").read_text()
    assert (tmp_path / "b" / "source_nc1_vs_accuracy.png").is_file()
    assert (tmp_path / "b" / "fewshot" / "target_nc1_vs_accuracy.png").is_file()
