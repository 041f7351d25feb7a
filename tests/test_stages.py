"""The shared stages (nctransfer.stages): score one candidate then combine the pool (= rank), per-method errors,
cached collapse and probe stages, and the typed settings the runners build from their configurations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nctransfer.exceptions import InputValueError
from nctransfer.metrics import compute_all, probe_accuracy
from nctransfer.pipeline import PROBE_C_GRID, RankConfig
from nctransfer.pipeline.recommended import DEFAULT_RECOMMENDED
from nctransfer.stages import (
    Candidate,
    CollapseSettings,
    Model,
    ProbeSettings,
    ResultCache,
    Run,
    ScoringSettings,
    collapse_metrics,
    combine_pool,
    score_candidates,
    score_one,
    truth_by_probe,
)
from nctransfer.stages.cache import array_digest
from nctransfer.transferability import get_method, rank, score

pytestmark = pytest.mark.usefixtures("one_thread_blas")

METHODS = ["logme", "hscore", "ncti", "etran"]


def _pool(n_models: int = 3, n: int = 60, d: int = 6, k: int = 3, seed: int = 0) -> dict[str, tuple]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    return {f"m{i}": (rng.normal(size=(n, d)) + (i + 1) * np.eye(k, d)[y], y) for i in range(n_models)}


def _candidate(name: str, X: np.ndarray, y: np.ndarray, X_test: np.ndarray, y_test: np.ndarray) -> Candidate:
    c = Candidate(name=name, model=Model(label=name, spec=name, pretrained=True, control=False), tap="penultimate",
                  tap_index=0, n_taps=1, dim=X.shape[1], X_train=X, y_train=y, X_test=X_test, y_test=y_test)
    c.digest = array_digest(X, y, X_test, y_test, None)
    return c


def test_score_one_candidate_then_combine_the_pool_equals_rank():
    pool = _pool()
    settings = ScoringSettings(methods=METHODS)
    parts = {name: score_one(name, entry, settings, pool_size=len(pool)) for name, entry in pool.items()}
    combined = combine_pool(parts, settings)
    direct = rank(pool, methods=METHODS)
    pd.testing.assert_frame_equal(combined, direct)  # the same numbers, bit for bit
    assert set(combined.attrs["terms"]) == {"ncti", "etran"}


def test_score_one_records_a_failing_method_and_still_runs_the_others():
    y = np.arange(40) % 4
    X = np.zeros((40, 3))  # LogME refuses all-zero features
    settings = ScoringSettings(methods=["logme", "neg_nc1"])
    with pytest.raises(InputValueError, match="logme"):
        score_one("zero", (X, y), settings, pool_size=1)
    part = score_one("zero", (X, y), settings, pool_size=1, skip_errors=True)
    assert part["errors"]["logme"].startswith("InputValueError: logme")
    assert "logme" not in part["values"] and "neg_nc1" in part["values"]
    # a candidate without errors takes the shared path and has no errors
    ok = score_one("ok", _pool(1)["m0"], settings, pool_size=1, skip_errors=True)
    assert ok["errors"] == {} and ok["values"]["logme"] == score("logme", *_pool(1)["m0"])


def test_score_candidates_is_cached_and_json_ready(tmp_path):
    pool = _pool(n_models=2, seed=1)
    cands = [_candidate(n, X, y, X[:10], y[:10]) for n, (X, y) in pool.items()]
    cache, run = ResultCache(tmp_path), Run(progress=False)
    settings = ScoringSettings(methods=["logme", "ncti"])
    first = score_candidates(cands, settings, cache, run)
    assert first["columns"] == ["logme", "ncti"]
    assert first["scores"]["m0"]["logme"] == pytest.approx(score("logme", *pool["m0"]), rel=1e-12)
    again = score_candidates(cands, settings, cache, run)
    assert again == first and cache.hits == 1


def test_collapse_and_probe_stages_equal_the_metrics_and_are_cached(tmp_path):
    (X, y), (Xt, yt) = _pool(n_models=1, n=90, seed=2)["m0"], _pool(n_models=1, n=30, seed=3)["m0"]
    c = _candidate("m0", X, y, Xt, yt)
    cache, run = ResultCache(tmp_path), Run(progress=False)
    values = collapse_metrics([c], cache, run)["m0"]
    assert values["nc1"] == compute_all(X, y)["nc1"]
    only = collapse_metrics([c], ResultCache(None), run, CollapseSettings(metrics=["nc1"]))["m0"]
    assert set(only) == {"nc1"}
    settings = ProbeSettings(C_grid=(0.1, 1.0), max_iter=200, seed=0)
    acc, details = truth_by_probe([c], settings, cache, run)
    ref = probe_accuracy(X, y, Xt, yt, C_grid=[0.1, 1.0], max_iter=200, seed=0)
    assert acc["m0"] == ref.accuracy and details["m0"]["C"] == ref.C
    hits = cache.hits
    assert truth_by_probe([c], settings, cache, run)[0] == acc and cache.hits == hits + 1


def test_rank_config_hands_each_stage_its_settings(tmp_path):
    cfg = RankConfig(methods="logme", method_options={"logme": {}}, per_class=7, seed=3, batch_size=8,
                     cache_dir=str(tmp_path))
    scoring = cfg.scoring_settings()
    assert scoring.methods == ["logme", get_method(DEFAULT_RECOMMENDED).name]  # the ranking score is added
    assert scoring.options == {"logme": {}}
    ext = cfg.extraction_settings(cfg.cache_root())
    assert (ext.per_class, ext.test_per_class, ext.seed, ext.batch_size) == (7, 50, 3, 8)
    assert ext.cache_dir == tmp_path / "features" and ext.no_cache is False
    assert cfg.extraction_settings(None).no_cache is True
    probe = cfg.probe_settings()
    assert (probe.C_grid, probe.max_iter, probe.seed, probe.val_fraction) == (PROBE_C_GRID, 300, 3, 0.2)
    record = cfg.record(["a", "b"], "digits", "probe", cfg.cache_root())
    assert list(record) == ["models", "data", "taps", "truth", "methods", "method_options", "recommended_score",
                            "per_class", "test_per_class", "image_size", "batch_size", "device", "pretrained",
                            "seed", "cache_dir", "probe_C_grid", "probe_max_iter", "truth_finetune",
                            "compare_finetune", "finetune_options"]
    assert record["cache_dir"] == str(tmp_path) and record["methods"] == scoring.methods


def test_fine_tuning_options_become_finetune_configs():
    pytest.importorskip("torch")
    from nctransfer.finetune import FinetuneConfig

    cfg = RankConfig(truth_finetune={"epochs": 1, "lr": 0.2}, finetune_options={"unit": "recommended"}, seed=4,
                     image_size=32)
    truth = cfg.truth_finetune_config()
    assert isinstance(truth, FinetuneConfig)
    assert (truth.method, truth.epochs, truth.lr, truth.batch_size, truth.seed, truth.image_size) == \
        ("full_ft", 1, 0.2, 32, 4, 32)
    comparison = cfg.comparison_finetune_config()
    assert (comparison.method, comparison.unit, comparison.epochs, comparison.bn_policy) == \
        ("scl_ft", "recommended", 3, "frozen")


def test_layers_config_hands_the_shared_stages_their_settings():
    pytest.importorskip("torch")
    from nctransfer.layers import LayersConfig

    cfg = LayersConfig(metrics=["nc1"], metric_options={"nc1": {}}, C_grid=[1.0], probe_val_fraction=0.3,
                       probe_max_iter=50, seed=2, dtype="float32", no_cache=True)
    ext = cfg.extraction_settings()
    assert (ext.dtype, ext.no_cache, ext.token_pool, ext.pool) == ("float32", True, "mean", "auto")
    assert cfg.collapse_settings() == CollapseSettings(metrics=["nc1"], options={"nc1": {}})
    assert cfg.probe_settings() == ProbeSettings(C_grid=(1.0,), max_iter=50, seed=2, val_fraction=0.3)


def test_study_scores_a_recipe_with_the_score_one_candidate_step():
    pytest.importorskip("torch")
    from nctransfer.pretrain.study import transfer_scores

    X, y = _pool(n_models=1, seed=5)["m0"]
    scores, terms, skipped = transfer_scores(X, y, None, ["logme", "leep", "ncti"])
    assert scores == {"logme": score("logme", X, y)}
    assert set(terms) == {"ncti"} and skipped == {
        "leep": "needs the source classifier's probabilities (this recipe has no classifier)"}
