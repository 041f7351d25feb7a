"""SelectConfig: the typed settings of ``select``: validation, YAML round trip, the same selection from keywords
and from a configuration, and the ``config.yaml`` of ``nctransfer select`` fed back with ``--config`` reproducing
the run."""

from __future__ import annotations

import importlib
import json
import math
import zlib

import pytest

from nctransfer.exceptions import InputValueError
from nctransfer.pipeline import SelectConfig

select = importlib.import_module("nctransfer.pipeline.select").select  # the function (same name as its module)

TRUTH = {f"m{i}": 0.55 + 0.04 * i for i in range(6)}
SCORES = {"m0": 5.0, "m1": 6.0, "m2": 1.0, "m3": 4.0, "m4": 3.0, "m5": 2.0}


def runner(name, r):
    u = (zlib.crc32(f"{name}|{r}".encode()) % 1000) / 1000 - 0.5
    return TRUTH[name] + 0.06 * u / math.sqrt(r) - 0.02 / r


def test_yaml_and_dict_round_trip():
    cfg = SelectConfig(budget=12, target="lp", score="logme", eta=3, min_resource=2, max_resource=4, per_class=None,
                       test_per_class=20, image_size=32, finetune_options={"lr": 0.01, "batch_size": 16}, seed=3,
                       progress=False, rank_options={"cache_dir": None}, backend="ray", ray_address="auto",
                       max_retries=1)
    assert cfg.target == "linear_probe" and cfg.budget == 12.0  # canonical method, budget a float
    assert SelectConfig.from_yaml(cfg.to_yaml()) == cfg
    assert SelectConfig.from_dict(cfg.to_dict()) == cfg
    assert SelectConfig.from_json(cfg.to_json()) == cfg
    assert all(SelectConfig.help().values())  # every field has help text
    with pytest.raises(InputValueError, match="unknown option"):
        SelectConfig.from_dict({"budget": 3, "epochs": 2})


def test_finetune_config_becomes_its_changed_options():
    from nctransfer.finetune import FinetuneConfig

    cfg = SelectConfig(budget=4, finetune_options=FinetuneConfig(method="lp", lr=0.02, batch_size=8))
    assert cfg.finetune_options == {"lr": 0.02, "batch_size": 8}


@pytest.mark.parametrize("changes,match", [
    ({"budget": None}, "budget is required"),
    ({"budget": -1}, "budget must be a finite number >= 0"),
    ({"budget": "ten"}, "budget must be a number"),
    ({"eta": 1}, "eta must be an integer >= 2"),
    ({"min_resource": 0}, "min_resource must be an integer >= 1"),
    ({"min_resource": 3, "max_resource": 2}, "max_resource must be an integer >= min_resource"),
    ({"target": "sgd"}, "unknown fine-tuning method 'sgd'"),
    ({"per_class": 0}, "per_class must be an integer >= 1 or None"),
    ({"backend": "spark"}, "backend must be 'local' or 'ray'; got 'spark'"),
    ({"finetune_options": [1]}, "finetune_options must be a mapping"),
    ({"progress": "yes"}, "progress must be True or False"),
])
def test_bad_settings_name_the_field(changes, match):
    with pytest.raises(InputValueError, match=match):
        SelectConfig(**{"budget": 4, **changes})


def test_keywords_and_config_give_the_same_selection(tmp_path):
    kw = dict(budget=20, eta=2, min_resource=1, target="full", seed=1)
    a = select(list(TRUTH), scores=SCORES, runner=runner, **kw)
    cfg = SelectConfig(**kw)
    b = select(list(TRUTH), scores=SCORES, runner=runner, config=cfg)
    c = select(list(TRUTH), scores=SCORES, runner=runner, config=cfg.to_dict())
    assert a.to_dict()["stages"] == b.to_dict()["stages"] == c.to_dict()["stages"]
    assert a.chosen == b.chosen == c.chosen and a.cost == b.cost <= 20
    # a keyword that differs from its default wins over the configuration
    d = select(list(TRUTH), scores=SCORES, runner=runner, config=cfg, budget=3)
    assert d.cost <= 3 and d.config["budget"] == 3.0
    # the recorded settings, read back, are the configuration of the run
    assert b.config["models"] == list(TRUTH) and SelectConfig.from_dict(b.config, ignore_unknown=True) == cfg
    with pytest.raises(InputValueError, match="budget is required"):
        select(list(TRUTH), scores=SCORES, runner=runner)


@pytest.mark.slow
def test_cli_config_yaml_reproduces_the_run(tmp_path, monkeypatch, one_thread):
    """``nctransfer select`` (2 tiny models on digits, two 1-epoch linear probes): its ``config.yaml`` fed back
    alone with ``--config`` (into another directory) makes the same selection with the same run accuracies."""
    from nctransfer.cli.main import main

    monkeypatch.setenv("NCTRANSFER_CACHE", str(tmp_path / "cache" / "features"))
    first = tmp_path / "first"
    assert main(["select", "--models", "efficientnet_lite0,random:efficientnet_lite0", "--data", "digits",
                 "--budget", "3", "--method", "lp", "--per-class", "7", "--test-per-class", "3", "--image-size", "32",
                 "--no-progress", "--quiet", "--out", str(first)]) == 0
    second = tmp_path / "second"
    assert main(["select", "--config", str(first / "config.yaml"), "--out", str(second)]) == 0
    a, b = (json.loads((d / "select.json").read_text()) for d in (first, second))
    assert a["plan"]["rounds"] == [[2, 1]] and len(a["runs"]) == 2 and not any(r["reused"] for r in b["runs"])
    for key in ("chosen", "scores", "plan", "stages", "cost"):
        assert b[key] == a[key], key
    assert [r["accuracy"] for r in b["runs"]] == [r["accuracy"] for r in a["runs"]]
    assert b["config"] == a["config"]
    assert SelectConfig.from_dict(a["config"], ignore_unknown=True) == SelectConfig(
        budget=3, target="lp", per_class=7, test_per_class=3, image_size=32, progress=False)
