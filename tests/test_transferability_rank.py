"""rank(), evaluate() and the ``nctransfer rank`` command (file mode)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from nctransfer import FeatureStats
from nctransfer.cli.main import main
from nctransfer.exceptions import InputValueError, NotFoundError, NumericalWarning, ShapeError
from nctransfer.transferability import EVALUATION_KEYS, evaluate, hscore, logme, rank


def make_pool(seed=0, n=150, d=8, K=3, seps=(0.5, 1.0, 2.0)):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % K
    means = rng.normal(size=(K, d))
    pool = {}
    for s in seps:
        P = np.exp(s * np.eye(K + 1)[y] + rng.normal(size=(n, K + 1)))
        pool[f"m{s}"] = (rng.normal(size=(n, d)) + s * means[y], y, P / P.sum(1, keepdims=True))
    return pool


# ------------------------------------------------------------------------------------------------ evaluate
def test_evaluate_hand_values():
    truth = {"a": 0.9, "b": 0.8, "c": 0.7, "d": 0.6}
    ev = evaluate({"a": 4.0, "b": 3.0, "c": 2.0, "d": 1.0}, truth)
    assert set(ev) == set(EVALUATION_KEYS)
    for k in ("weighted_tau", "kendall", "spearman", "pearson"):
        assert ev[k] == pytest.approx(1.0)
    assert ev["top1_regret"] == 0.0
    rev = evaluate(pd.Series({"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0}), truth)
    assert rev["kendall"] == pytest.approx(-1.0) and rev["weighted_tau"] == pytest.approx(-1.0)
    assert rev["top1_regret"] == pytest.approx(0.3)
    # weighted tau is scipy's with its defaults (hyperbolic weigher), symmetric in its arguments
    s = {"a": 2.0, "b": 4.0, "c": 1.0, "d": 3.0}
    ev = evaluate(s, truth)
    a, b = np.array(list(s.values())), np.array(list(truth.values()))
    assert ev["weighted_tau"] == pytest.approx(st.weightedtau(b, a).statistic)
    assert ev["weighted_tau"] == pytest.approx(st.weightedtau(a, b).statistic)
    assert ev["kendall"] == pytest.approx(st.kendalltau(a, b).statistic)
    assert ev["spearman"] == pytest.approx(st.spearmanr(a, b).statistic)
    assert ev["pearson"] == pytest.approx(st.pearsonr(a, b).statistic)
    assert ev["top1_regret"] == pytest.approx(0.1)  # top-scored is b (0.8), best is a (0.9)
    # ties for the top score: mean true accuracy of the tied models
    assert evaluate({"a": 1.0, "b": 1.0, "c": 0.0}, truth)["top1_regret"] == pytest.approx(0.05)


def test_evaluate_errors_and_nan():
    with pytest.raises(InputValueError, match=r"no accuracy for 1 scored model\(s\): \['z'\]"):
        evaluate({"a": 1.0, "z": 2.0}, {"a": 0.5, "b": 0.6})
    with pytest.raises(InputValueError, match="mapping model -> value"):
        evaluate([1.0, 2.0], {"a": 0.5})
    with pytest.warns(RuntimeWarning, match="ignoring 1 model"):
        ev = evaluate({"a": 1.0, "b": np.nan, "c": 3.0}, {"a": 0.1, "b": 0.2, "c": 0.3})
    assert ev["kendall"] == pytest.approx(1.0)
    df = pd.DataFrame({"m1": [1.0, 2.0], "m2": [2.0, 1.0]}, index=["a", "b"])
    ev = evaluate(df, pd.DataFrame({"model": ["a", "b"], "accuracy": [0.1, 0.2]}))
    assert ev["m1"]["kendall"] == pytest.approx(1.0) and ev["m2"]["kendall"] == pytest.approx(-1.0)


# ---------------------------------------------------------------------------------------------------- rank
def test_rank_dataframe_seconds_notes_and_pool_scores():
    pool = make_pool()
    no_probs = {k: v[:2] for k, v in pool.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NumericalWarning)
        df = rank(no_probs, methods=["logme", "leep", "ncti"], truth={"m0.5": 0.3, "m1.0": 0.5, "m2.0": 0.9})
    assert list(df.columns) == ["logme", "leep", "ncti"] and df.index.name == "model"
    assert list(df.index) == ["m0.5", "m1.0", "m2.0"]
    assert df["leep"].isna().all()
    assert any("leep: skipped for m0.5, m1.0, m2.0 -- needs source-classifier probabilities" in n
               for n in df.attrs["notes"])
    assert set(df.attrs["seconds"]) == {"logme", "leep", "ncti"}
    assert all(v >= 0 for v in df.attrs["seconds"].values())
    assert set(df.attrs["terms"]["ncti"]) == set(pool)
    assert df.attrs["evaluation"]["logme"]["kendall"] == pytest.approx(1.0)
    for name, (X, y, _) in pool.items():
        assert df.loc[name, "logme"] == pytest.approx(logme(X, y), rel=1e-12)
    # methods with options, given as a mapping
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NumericalWarning)
        d2 = rank(pool, methods={"gbc": {"gaussian": "diagonal"}, "leep": None})
    assert d2["leep"].notna().all() and list(d2.columns) == ["gbc", "leep"]


def test_rank_default_methods_and_candidate_forms(tmp_path):
    pool = make_pool(n=90)
    X, y, P = pool["m1.0"]
    np.savez(tmp_path / "from_file.npz", X=X, y=y, P=P)
    stats = FeatureStats().update(*pool["m2.0"][:2])
    cands = {"from_file": str(tmp_path / "from_file.npz"), "as_stats": stats,
             "as_mapping": {"X": pool["m0.5"][0], "y": pool["m0.5"][1]}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NumericalWarning)
        df = rank(cands)
    assert "nleep" not in df.columns and "parc" not in df.columns  # expensive: only with methods="all"
    assert df.loc["from_file", "leep"] == pytest.approx(rank({"f": (X, y, P)}, methods=["leep"]).iloc[0, 0])
    # statistics-only candidate: the methods that accept FeatureStats, NaN elsewhere
    assert df.loc["as_stats", "hscore"] == pytest.approx(hscore(*pool["m2.0"][:2]), rel=1e-8)
    assert np.isnan(df.loc["as_stats", "sfda"])
    assert any("needs per-sample features, got FeatureStats" in n for n in df.attrs["notes"])
    # list of paths: names are file stems
    assert list(rank([tmp_path / "from_file.npz"], methods="logme").index) == ["from_file"]


def test_rank_bad_candidates(tmp_path):
    X, y = make_pool()["m1.0"][:2]
    with pytest.raises(NotFoundError, match="does not exist"):
        rank({"a": str(tmp_path / "missing.npz")})
    np.savez(tmp_path / "noy.npz", X=X)
    with pytest.raises(InputValueError, match="has no array 'y'"):
        rank({"a": str(tmp_path / "noy.npz")}, methods="logme")
    with pytest.raises(InputValueError, match="must be \\(X, y\\)"):
        rank({"a": X}, methods="logme")
    with pytest.raises(NotFoundError, match="unknown transferability method"):
        rank({"a": (X, y)}, methods="logmee")
    with pytest.raises(ShapeError, match=r"rank\[a\]: .*different lengths"):
        rank({"a": (X, y[:-1])}, methods="logme")


# ----------------------------------------------------------------------------------------------------- CLI
def write_files(tmp_path, with_probs=True):
    files = []
    for name, (X, y, P) in make_pool(n=90).items():
        path = tmp_path / f"{name}.npz"
        if with_probs:
            np.savez(path, X=X, y=y, P=P)
        else:
            np.savez(path, X=X, y=y)
        files.append(str(path))
    (tmp_path / "truth.csv").write_text("model,accuracy\nm0.5,0.4\nm1.0,0.6\nm2.0,0.8\n")
    return files


def test_cli_json_shape(tmp_path, capsys):
    files = write_files(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rc = main(["rank", *files, "--methods", "logme,leep,ncti", "--truth", str(tmp_path / "truth.csv"),
                   "--json", "--option", "ncti.n_top=16"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"scores", "seconds", "evaluation"}
    assert set(out["scores"]) == {"m0.5", "m1.0", "m2.0"}
    assert all(set(v) == {"logme", "leep", "ncti"} for v in out["scores"].values())
    assert set(out["seconds"]) == {"logme", "leep", "ncti"}
    assert set(out["evaluation"]) == {"logme", "leep", "ncti"}
    assert all(set(v) == set(EVALUATION_KEYS) for v in out["evaluation"].values())
    assert out["evaluation"]["logme"]["kendall"] == pytest.approx(1.0)


def test_cli_table_notes_and_errors(tmp_path, capsys):
    files = write_files(tmp_path, with_probs=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rc = main(["rank", *files, "--methods", "hscore,nce", "--truth", str(tmp_path / "truth.csv")])
    cap = capsys.readouterr()
    assert rc == 0
    assert "Scores (higher = predicted to transfer better)" in cap.out and "weighted_tau" in cap.out
    assert "note: nce: skipped" in cap.err
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rc = main(["rank", *files, "--methods", "hscore", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["evaluation"] == {}
    assert main(["rank"]) == 2
    assert "give one or more FILE.npz" in capsys.readouterr().err
    assert main(["rank", str(tmp_path / "nope.npz")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["rank", *files, "--option", "gbc-gaussian"]) == 2
    assert "METHOD.KEY=VALUE" in capsys.readouterr().err
    assert main(["rank", "--list-methods"]) == 0
    assert "logme" in capsys.readouterr().out


def test_rank_shared_work_equals_standalone_calls():
    """rank() shares the scatter matrix, decompositions and posteriors between methods of one candidate: every
    value must equal the method called alone."""
    from nctransfer.transferability import METHODS, etran, ncti

    pool = make_pool(n=120, d=70)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        df = rank(pool, methods="all")
        for name, info in METHODS.items():
            if info.pool_relative:
                alone = (ncti if name == "ncti" else etran)({k: v[:2] for k, v in pool.items()})[name]
                np.testing.assert_allclose(df[name].to_numpy(), alone.to_numpy(), rtol=1e-9, atol=1e-12,
                                           err_msg=name)
                continue
            for model, (X, y, P) in pool.items():
                alone = info.fn(X, y, P) if info.needs_probs else info.fn(X, y)
                assert df.loc[model, name] == pytest.approx(alone, rel=1e-9, abs=1e-12), (name, model)


def test_rank_equals_per_candidate_parts_combined():
    """What a distributed sweep does (score each candidate separately, combine on the driver) equals rank()."""
    from nctransfer.transferability.ranking import combine_candidates, resolve_methods, score_candidate

    rng = np.random.default_rng(5)
    y = rng.integers(0, 3, 90)
    pool = {f"m{i}": (rng.normal(size=(90, 6)) + (i + 1) * 0.3 * np.eye(3, 6)[y], y) for i in range(3)}
    df = rank(pool, methods=["logme", "ncti", "etran", "gbc"])
    infos, opts, _ = resolve_methods(["logme", "ncti", "etran", "gbc"])
    parts = {n: score_candidate(n, e, infos, opts, pool_size=3) for n, e in pool.items()}
    assert set(parts["m0"]["terms"]) == {"ncti", "etran"} and set(parts["m0"]["values"]) == {"logme", "gbc"}
    got = combine_candidates(parts, ["logme", "ncti", "etran", "gbc"])
    pd.testing.assert_frame_equal(got, df)
    assert got.attrs["terms"] == df.attrs["terms"]
