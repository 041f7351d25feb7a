"""The benchmark suite: across-pool summary and leave-one-pool-out by hand; a tiny two-pool run end to end."""

import json
import warnings

import pytest

from nctransfer.pipeline.benchmark import PoolSpec, default_pools, format_suite_md, run_suite, summarize


def _pool(taus, base, verdicts=None):
    return {"evaluation": {m: {"weighted_tau": t} for m, t in taus.items()},
            "baselines": {"evaluation": {b: {"weighted_tau": t} for b, t in base.items()},
                          "verdicts": verdicts or {}}}


def test_summary_and_leave_one_pool_out_by_hand():
    pools = {
        "p1": _pool({"a": 0.9, "b": 0.1}, {"depth": 0.5},
                    {"a": {"beats_random": True, "not_beaten": []}, "b": {"beats_random": False, "not_beaten": ["depth"]}}),
        "p2": _pool({"a": 0.7, "b": 0.8}, {"depth": 0.6}),
        "p3": _pool({"a": 0.2, "b": 0.6}, {"depth": 0.9}),
    }
    summary, folds, rec = summarize(pools)
    assert summary["a"]["mean_weighted_tau"] == pytest.approx(0.6) and summary["a"]["pools"] == 3
    assert summary["b"]["mean_weighted_tau"] == pytest.approx(0.5)
    assert summary["a"]["beats_baselines"] == 1 and summary["b"]["beats_random"] == 0
    assert summary["baseline:depth"]["mean_weighted_tau"] == pytest.approx(2.0 / 3)
    by = {f["held_out"]: f for f in folds}
    # held out p1: on p2, p3 a averages 0.45, b 0.70 -> b, judged on p1: 0.1
    assert by["p1"]["chosen"] == "b" and by["p1"]["weighted_tau"] == pytest.approx(0.1)
    # held out p2: on p1, p3 a 0.55, b 0.35 -> a (0.7 on p2); held out p3: a 0.8, b 0.45 -> a (0.2 on p3)
    assert by["p2"]["chosen"] == "a" and by["p3"]["chosen"] == "a" and by["p3"]["weighted_tau"] == pytest.approx(0.2)
    assert by["p3"]["baseline"] == "depth" and by["p3"]["baseline_weighted_tau"] == pytest.approx(0.9)
    assert rec == "a"


def test_default_pools_cover_the_suite():
    names = [p.name for p in default_pools()]
    assert any(n.startswith("layers/") and "10-shot" in n for n in names)
    assert "layers/digits" in names and "models/digits" in names
    assert all(p.models[-1].startswith("random:") for p in default_pools())
    quick = default_pools(quick=True)
    assert all(p.image_size == 32 and len(p.models) == 2 for p in quick)


def test_run_suite_on_two_tiny_pools(tmp_path):
    from test_pipeline_rank import tiny_arrays

    def arrays(seed):
        # a faint class-dependent quadrant: candidates (taps) differ in how well a probe reads it
        return tiny_arrays(n_per_class=16, seed=seed, noise=0.88, signal=0.12)

    def data(seed):
        return lambda: {"train": arrays(seed), "test": arrays(seed + 10)}
    pools = [PoolSpec("tiny-a", ("timm:resnet10t",), data(0), "all", None, None, 32),
             PoolSpec("tiny-b", ("timm:resnet10t",), data(1), "all", None, None, 32)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = run_suite(pools, methods=["logme", "neg_nc1"], out=tmp_path, cache_dir=None, progress=False,
                        probe_C_grid=(0.1, 1.0), rank_options={"pretrained": False})
    assert set(res.pools) == {"tiny-a", "tiny-b"}
    for p in res.pools.values():
        assert {"logme", "neg_nc1"} <= set(p["evaluation"]) and p["n_candidates"] >= 3  # + the recommended score
        assert "weighted_tau_lo" in p["intervals"]["logme"]
        assert "random" in p["baselines"]
    assert len(res.lopo) == 2 and res.recommended in set(res.pools["tiny-a"]["evaluation"])
    saved = json.loads((tmp_path / "benchmark.json").read_text())
    assert set(saved["pools"]) == {"tiny-a", "tiny-b"}
    md = (tmp_path / "benchmark.md").read_text()
    assert f"## tiny-a ({res.pools['tiny-a']['n_candidates']} candidates)" in md and "Recommended by leave-one-pool-out" in md
    assert md == format_suite_md(res)


def test_partial_coverage_pools_are_left_out_of_the_means():
    pools = {"p1": _pool({"a": 0.5, "leep": 1.0}, {}), "p2": _pool({"a": 0.3, "leep": 0.9}, {})}
    pools["p1"]["intervals"] = {"leep": {"coverage": 2 / 34}, "a": {"coverage": 1.0}}
    summary, folds, rec = summarize(pools)
    assert summary["leep"]["partial_pools"] == 1 and summary["leep"]["pools"] == 1
    assert summary["leep"]["mean_weighted_tau"] == pytest.approx(0.9)
    assert summary["a"]["mean_weighted_tau"] == pytest.approx(0.4)
