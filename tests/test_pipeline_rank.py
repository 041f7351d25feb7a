"""rank_models end to end on a tiny pool (two small timm models with random weights, a small array dataset and
scikit-learn's digits), its CLI (``nctransfer rank --models``), caching, configuration, bad input, and the
rank-average ensemble behind the recommended score."""

from __future__ import annotations

import json
import os
import warnings

import numpy as np
import pandas as pd
import pytest

from nctransfer.cli.main import main
from nctransfer.exceptions import InputValueError, NotFoundError
from nctransfer.pipeline import DEFAULT_RECOMMENDED, percentile_ranks, rank_models, register_rank_average
from nctransfer.pipeline.recommended import rank_average_frame
from nctransfer.reports.browser import check_in_browser, find_browser

MODELS = ["timm:resnet10t", "timm:efficientnet_lite0"]
FAST = dict(pretrained=False, image_size=32, per_class=None, test_per_class=None, probe_C_grid=(0.1, 1.0),
            progress=False)


def tiny_arrays(n_per_class: int = 24, k: int = 3, seed: int = 0, noise: float = 0.4, signal: float = 0.6):
    """Images ``[N, 16, 16]`` whose class sets the brightness of a quadrant (learnable even by random features):
    uniform noise in ``[0, noise)`` plus ``signal`` on the class's quadrant (a small ``signal``: a faint cue that
    candidates read unequally well)."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(k), n_per_class)
    X = rng.random((len(y), 16, 16)).astype(np.float32) * noise
    for c in range(k):
        r, q = divmod(c, 2)
        X[y == c, 8 * r:8 * r + 8, 8 * q:8 * q + 8] += signal
    return X, y


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("rank")
    cache = tmp_path_factory.mktemp("cache")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = rank_models(MODELS, tiny_arrays(), out=out, cache_dir=cache, **FAST)
    return res, out, cache


def test_rank_writes_every_file_with_every_score(tiny_run):
    res, out, _ = tiny_run
    for f in ("results.json", "scores.csv", "report.html", "report.md", "config.yaml"):
        assert (out / f).is_file(), f
    saved = json.loads((out / "results.json").read_text())
    from nctransfer.transferability import list_methods

    expected = set(list_methods(include_expensive=False))
    names = [c["name"] for c in saved["candidates"]]
    assert names == MODELS
    for n in names:
        assert set(saved["scores"][n]) == expected  # every score for every candidate
        # feature-based scores are finite; leep/nce too because random timm models have a 1000-way classifier
        assert all(v is not None and np.isfinite(v) for v in saved["scores"][n].values())
    assert set(saved["evaluation"]) == expected  # an evaluation per score
    for e in saved["evaluation"].values():
        assert set(e) == {"weighted_tau", "kendall", "spearman", "pearson", "top1_regret"}
    assert saved["recommended_score"] == DEFAULT_RECOMMENDED
    assert saved["ranking"][0] == saved["recommended"]
    truth = saved["truth"]["accuracy"]
    assert set(truth) == set(names) and all(0.0 <= a <= 1.0 for a in truth.values())
    df = pd.read_csv(out / "scores.csv", index_col=0)
    assert list(df.index) == saved["ranking"] and expected <= set(df.columns)
    np.testing.assert_allclose(df.loc[names[0], "logme"], saved["scores"][names[0]]["logme"], rtol=1e-9)


def test_truth_is_the_probe_on_the_same_features(tiny_run):
    """The stored ground truth equals a fresh linear probe on freshly extracted features."""
    res, _, _ = tiny_run
    from nctransfer.data import load_dataset
    from nctransfer.extract import extract
    from nctransfer.metrics import probe_accuracy
    from nctransfer.models import load_model

    import torch

    torch.manual_seed(0)  # rank_models seeds random initialisation with its seed (0)
    m = load_model(MODELS[0], pretrained=False)
    tr = load_dataset(tiny_arrays(), "train", model=m, image_size=32)
    te = load_dataset(tiny_arrays(), "test", model=m, image_size=32)
    a = extract(m, tr, ["penultimate"], store_features=True, progress=False)["penultimate"]
    b = extract(m, te, ["penultimate"], store_features=True, progress=False)["penultimate"]
    p = probe_accuracy(a.features, a.labels, b.features, b.labels, C_grid=(0.1, 1.0), max_iter=300, seed=0)
    assert res["truth"]["accuracy"][MODELS[0]] == pytest.approx(p.accuracy, abs=1e-12)


def test_second_run_is_served_from_the_cache(tiny_run, tmp_path):
    res, _, cache = tiny_run
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = rank_models(MODELS, tiny_arrays(), out=tmp_path, cache_dir=cache, **FAST)
    assert again["scores"] == res["scores"] and again["truth"]["accuracy"] == res["truth"]["accuracy"]
    assert {"transferability scores", "collapse metrics", "ground truth (linear probe)"} <= set(
        again["timings_cached"])
    assert all(v["from_cache"] for v in again["extraction"].values())


@pytest.mark.skipif(find_browser() is None, reason="no headless Chromium installed (Debian package 'chromium'; "
                    "`make test` installs it when run as root)")
def test_report_renders_in_headless_chromium(tiny_run, tmp_path):
    _, out, _ = tiny_run
    check = check_in_browser(out / "report.html", tmp_path / "shot.png")
    assert check.n_images >= 2  # summary + score scatter at least
    assert check.all_images_loaded, f"{check.n_loaded}/{check.n_images} images decoded"
    assert not check.blank


def test_all_taps_layers_and_truth_csv(tmp_path):
    """taps='all' with a subset selector: one candidate per tap, layer-wise curves; and a user truth CSV."""
    data = tiny_arrays(n_per_class=16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = rank_models(MODELS[:1], data, taps=["layer1.0", "layer3.0", "penultimate"], methods=["logme", "neg_nc1",
                          "ncti"], recommended_score="neg_nc1", out=tmp_path / "a", cache_dir=None, **FAST)
    names = [c["name"] for c in res["candidates"]]
    assert names == [f"{MODELS[0]}@{t}" for t in ("layer1.0", "layer3.0", "penultimate")]
    layer = res["layers"][MODELS[0]]
    assert [t["tap"] for t in layer["taps"]] == ["layer1.0", "layer3.0", "penultimate"]
    assert all("nc1" in t and "probe_accuracy" in t for t in layer["taps"])
    # neg_nc1 is -NC1 of the same training features
    for c in names:
        assert res["scores"][c]["neg_nc1"] == pytest.approx(-res["collapse"][c]["nc1"], rel=1e-9)
    csv = tmp_path / "truth.csv"
    csv.write_text("model,accuracy\n" + "".join(f"{n},{a}\n" for n, a in zip(names, (0.2, 0.5, 0.9))))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res2 = rank_models(MODELS[:1], data, taps=["layer1.0", "layer3.0", "penultimate"], methods=["neg_nc1"],
                           recommended_score="neg_nc1", truth=csv, cache_dir=None, **FAST)
    assert res2["truth"]["kind"] == "csv" and res2["truth"]["accuracy"][names[2]] == 0.9
    from nctransfer.transferability import evaluate

    expect = evaluate({n: res2["scores"][n]["neg_nc1"] for n in names}, dict(zip(names, (0.2, 0.5, 0.9))))
    assert res2["evaluation"]["neg_nc1"] == pytest.approx(expect)


def test_cli_models_mode_digits_with_config(tmp_path, capsys):
    cfg = tmp_path / "job.yaml"
    cfg.write_text("per_class: 6\ntest_per_class: 4\nimage_size: 32\ntaps: penultimate\nmethods: logme,hscore,ncti\n"
                   "recommended: hscore\n")
    out = tmp_path / "out"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rc = main(["rank", "--models", ",".join(MODELS), "--data", "digits", "--no-pretrained", "--out", str(out),
                   "--cache-dir", str(tmp_path / "cache"), "--config", str(cfg), "--per-class", "5", "--quiet"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "Ranking by H-score" in printed or "Ranking by" in printed
    assert f"Report: {(out / 'report.html').resolve().as_uri()}" in printed
    import yaml

    resolved = yaml.safe_load((out / "config.yaml").read_text())
    assert resolved["per_class"] == 5  # the flag overrides the YAML
    assert resolved["test_per_class"] == 4 and resolved["image_size"] == 32  # from the YAML
    assert resolved["recommended_score"] == "hscore"
    saved = json.loads((out / "results.json").read_text())
    assert saved["data"]["n_train"] == 50 and saved["data"]["n_test"] == 40
    assert set(saved["scores"][MODELS[0]]) == {"logme", "hscore", "ncti"}


# ------------------------------------------------------------------------------------------------- bad input
@pytest.fixture
def previous_out(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").write_text('{"previous": true}\n')
    (out / "report.html").write_text("<html>previous</html>\n")
    return out


def _unchanged(out):
    assert (out / "results.json").read_text() == '{"previous": true}\n'
    assert (out / "report.html").read_text() == "<html>previous</html>\n"
    assert sorted(p.name for p in out.iterdir()) == ["report.html", "results.json"]


def test_unknown_model_fails_clearly(previous_out):
    with pytest.raises(NotFoundError, match="unknown .*efficientnet_lite9|efficientnet_lite9"):
        rank_models(["efficientnet_lite0", "efficientnet_lite9"], tiny_arrays(), out=previous_out, **FAST)
    _unchanged(previous_out)


def test_unknown_dataset_fails_clearly(previous_out):
    with pytest.raises(NotFoundError, match="fashion-mnlst"):
        rank_models(MODELS, "fashion-mnlst", out=previous_out, **FAST)
    _unchanged(previous_out)


def test_one_class_dataset_fails_clearly(previous_out):
    X, y = tiny_arrays()
    with pytest.raises(InputValueError, match="at least 2 classes"):
        rank_models(MODELS, (X, np.zeros_like(y)), out=previous_out, **FAST)
    _unchanged(previous_out)


def test_truth_csv_missing_candidates_fails_clearly(previous_out, tmp_path):
    csv = tmp_path / "truth.csv"
    csv.write_text(f"model,accuracy\n{MODELS[0]},0.5\n")
    with pytest.raises(InputValueError, match=r"no accuracy for candidate\(s\) \['timm:efficientnet_lite0'\]"):
        rank_models(MODELS, tiny_arrays(), truth=csv, out=previous_out, **FAST)
    _unchanged(previous_out)
    with pytest.raises(NotFoundError, match="does not exist"):
        rank_models(MODELS, tiny_arrays(), truth=tmp_path / "nope.csv", out=previous_out, **FAST)
    with pytest.raises(InputValueError, match="expected 'probe', 'finetune'"):
        rank_models(MODELS, tiny_arrays(), truth="probes", out=previous_out, **FAST)
    _unchanged(previous_out)


def test_unwritable_output_directory_fails_before_any_work(tmp_path, capsys):
    blocker = tmp_path / "file.txt"
    blocker.write_text("keep me")
    with pytest.raises(InputValueError, match="is a file, not a directory"):
        rank_models(MODELS, tiny_arrays(), out=blocker / "sub", **FAST)
    with pytest.raises(InputValueError, match="exists and is not a directory"):
        rank_models(MODELS, tiny_arrays(), out=blocker, **FAST)
    assert blocker.read_text() == "keep me"
    if os.geteuid() != 0:  # root writes through permission bits
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        try:
            with pytest.raises(InputValueError, match="not writable"):
                rank_models(MODELS, tiny_arrays(), out=ro, **FAST)
        finally:
            ro.chmod(0o700)
    # the CLI prints the message and exits with 2
    assert main(["rank", "--models", ",".join(MODELS), "--data", "digits", "--out", str(blocker)]) == 2
    assert "exists and is not a directory" in capsys.readouterr().err


def test_cli_models_mode_requires_data_and_out(capsys):
    assert main(["rank", "--models", "efficientnet_lite0"]) == 2
    assert "--data is required" in capsys.readouterr().err
    assert main(["rank", "--models", "efficientnet_lite0", "--data", "digits"]) == 2
    assert "--out DIR is required" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ rank average
def test_percentile_ranks_by_hand():
    np.testing.assert_allclose(percentile_ranks([3.0, 1.0, 2.0]), [1.0, 0.0, 0.5])
    np.testing.assert_allclose(percentile_ranks([1.0, 1.0, 5.0]), [0.25, 0.25, 1.0])  # ties share the mean rank
    out = percentile_ranks([np.nan, 2.0, 1.0])
    assert np.isnan(out[0]) and out[1:].tolist() == [1.0, 0.0]
    assert percentile_ranks([7.0]).tolist() == [0.5]


def test_rank_average_frame_by_hand():
    from nctransfer.transferability import METHODS

    assert "logme" in METHODS and "hscore" in METHODS
    pool = {"a": {"logme": 1.0, "hscore": 30.0}, "b": {"logme": 2.0, "hscore": 10.0},
            "c": {"logme": 3.0, "hscore": 20.0}}
    df = rank_average_frame(pool, ("logme", "hscore"), "avg")
    # logme ranks a<b<c -> 0, .5, 1; hscore ranks b<c<a -> a 1, b 0, c .5
    assert df["avg"].to_dict() == pytest.approx({"a": 0.5, "b": 0.25, "c": 0.75})


def test_register_rank_average_checks():
    with pytest.raises(InputValueError, match="at least 2 distinct"):
        register_rank_average("x_single", ["logme"])
    with pytest.raises(InputValueError, match="needs source probabilities"):
        register_rank_average("x_leep", ["logme", "leep"])
    with pytest.raises(InputValueError, match="already registered"):
        register_rank_average("logme", ["hscore", "gbc"])
    with pytest.raises(NotFoundError):
        register_rank_average("x_unknown", ["logme", "nosuchscore"])


def test_constant_score_has_no_ranking_quality():
    """A score equal (up to rounding) for every candidate, e.g. H-score = K - 1 when N < d, gets NaN correlations
    rather than scipy's arbitrary weighted tau of a fully tied ranking."""
    from nctransfer.transferability import evaluate

    e = evaluate({"a": 9.0, "b": 9.0 + 1e-13, "c": 9.0, "d": 9.0}, {"a": 0.5, "b": 0.6, "c": 0.7, "d": 0.8})
    assert all(np.isnan(e[k]) for k in ("weighted_tau", "kendall", "spearman", "pearson"))
    assert e["top1_regret"] == pytest.approx(0.8 - 0.65)  # every candidate tied for the top: mean accuracy


def test_finetune_truth_and_comparison_on_a_tiny_pool(tmp_path):
    """truth='finetune' (SCL FT at a tap, full FT for the penultimate candidate) and the linear probe vs SCL FT
    comparison with the SCL unit taken from the recommended candidate."""
    taps = ["layer2.0", "penultimate"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = rank_models(MODELS[:1], tiny_arrays(n_per_class=16), taps=taps, truth="finetune",
                          truth_finetune={"epochs": 1, "batch_size": 16}, methods=["neg_nc1"],
                          recommended_score="neg_nc1", compare_finetune=True,
                          finetune_options={"epochs": 1, "batch_size": 16, "unit": "recommended"},
                          out=tmp_path, cache_dir=tmp_path / "cache", **FAST)
    names = [f"{MODELS[0]}@{t}" for t in taps]
    assert res["truth"]["kind"] == "finetune"
    assert res["truth"]["details"][names[0]]["method"] == "scl_ft" and res["truth"]["details"][names[0]]["unit"] \
        == "layer2.0"
    assert res["truth"]["details"][names[1]]["method"] == "full_ft"
    assert all(0.0 <= res["truth"]["accuracy"][n] <= 1.0 for n in names)
    ft = res["finetune"]
    assert ft["model"] == MODELS[0] and set(ft["methods"]) == {"linear_probe", "scl_ft"}
    top_tap = res["recommended"].split("@")[1]
    if top_tap != "penultimate":
        assert ft["unit"] == top_tap and "recommended candidate's tap" in ft["description"]
    else:
        assert ft["methods"]["scl_ft"].get("auto")
    assert (tmp_path / "finetune" / "scl_ft" / "result.json").is_file()
    assert "Fine-tuning" in (tmp_path / "report.html").read_text()
