"""``nctransfer rank --models ...`` under torchrun (2 gloo processes) equals one process; only rank 0 writes."""

from __future__ import annotations

import json
import sys

import pytest

from _torchrun import torchrun

pytestmark = [pytest.mark.distributed, pytest.mark.slow]

ARGS = ["--models", "efficientnet_lite0,random:efficientnet_lite0", "--data", "digits", "--per-class", "5",
        "--test-per-class", "3", "--image-size", "32", "--batch-size", "16", "--methods", "logme,hscore,ncti,sfda",
        "--quiet"]


def test_rank_under_torchrun_equals_one_process(tmp_path):
    from nctransfer.cli.main import main

    one, two = tmp_path / "one", tmp_path / "two"
    assert main(["rank", *ARGS, "--out", str(one), "--cache-dir", str(tmp_path / "c1")]) == 0
    out = torchrun(["-m", "nctransfer", "rank", *ARGS, "--out", str(two), "--cache-dir", str(tmp_path / "c2")])
    assert out.count("Report:") == 1, out  # only rank 0 prints
    a = json.loads((one / "results.json").read_text())
    b = json.loads((two / "results.json").read_text())
    assert a["ranking"] == b["ranking"] and a["recommended"] == b["recommended"]
    assert a["truth"]["accuracy"] == pytest.approx(b["truth"]["accuracy"], rel=1e-6)
    for name, scores in a["scores"].items():
        for method, value in scores.items():
            other = b["scores"][name][method]
            assert (value is None and other is None) or other == pytest.approx(value, rel=1e-6, abs=1e-9), \
                (name, method)
    for name, metrics in a["collapse"].items():
        for k, v in metrics.items():
            if v is not None:
                assert b["collapse"][name][k] == pytest.approx(v, rel=1e-6, abs=1e-9), (name, k)
    # both ranks extracted half of each split: two rank entries per (model, split) in the shared cache
    manifests = list((tmp_path / "c2" / "features").rglob("manifest.json"))
    assert len(manifests) == 2 * 2 * 2
    assert sorted(p.name for p in two.iterdir() if p.is_file()) == sorted(p.name for p in one.iterdir() if p.is_file())
