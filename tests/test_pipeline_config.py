"""RankConfig: the typed settings of rank_models (round trips, validation, precedence over keywords), and the
config.yaml a run writes, read back, reproducing the run."""

from __future__ import annotations

import dataclasses
import inspect
import json
import warnings

import pytest
import yaml

from nctransfer.exceptions import InputValueError
from nctransfer.pipeline import PROBE_C_GRID, RankConfig, rank_models

pytestmark = pytest.mark.usefixtures("one_thread")


def test_every_rank_models_setting_is_a_field_with_the_same_default_and_help():
    params = inspect.signature(rank_models).parameters
    fields = {f.name: f for f in dataclasses.fields(RankConfig)}
    assert set(fields) == set(params) - {"models", "data", "train", "test", "val", "out", "config"}
    cfg = RankConfig()
    for name in fields:
        default = params[name].default
        assert getattr(cfg, name) == (default if default is not None or name != "method_options" else {}), name
        assert RankConfig.help()[name], name


def test_round_trips_yaml_json_dict():
    cfg = RankConfig(taps="all", methods=("logme", "ncti"), per_class=20, test_per_class=None, seed=3,
                     method_options={"gbc": {"gaussian": "diagonal"}}, probe_C_grid=[0.5, 2], truth="probe")
    assert cfg.methods == ["logme", "ncti"] and cfg.probe_C_grid == (0.5, 2.0)
    assert RankConfig.from_yaml(cfg.to_yaml()) == cfg
    assert RankConfig.from_json(cfg.to_json()) == cfg
    assert RankConfig.from_dict(cfg.to_dict()) == cfg
    assert RankConfig().probe_C_grid == PROBE_C_GRID


@pytest.mark.parametrize("kw, match", [
    ({"backend": "spark"}, "backend must be 'local' or 'ray'; got 'spark'"),
    ({"per_class": 0}, r"per_class must be an integer >= 1 or None; got 0"),
    ({"batch_size": 2.5}, r"batch_size must be an integer >= 1; got 2.5"),
    ({"truth": 3}, "truth: expected 'probe', 'finetune'"),
    ({"probe_C_grid": [0.1, -1]}, "probe_C_grid must be positive numbers"),
    ({"methods": ["logme", 3]}, "methods must be names"),
    ({"pretrained": "yes"}, "pretrained must be True or False"),
    ({"method_options": [1]}, "method_options must be a mapping"),
])
def test_bad_settings_are_named(kw, match):
    with pytest.raises(InputValueError, match=match):
        RankConfig(**kw)


def test_unknown_keys_are_listed_unless_ignored():
    with pytest.raises(InputValueError, match=r"unknown option\(s\) \['modles'\]"):
        RankConfig.from_dict({"modles": ["a"]})
    assert RankConfig.from_dict({"models": ["a"], "seed": 2}, ignore_unknown=True) == RankConfig(seed=2)


def test_keywords_that_differ_from_their_defaults_override_the_config():
    cfg = RankConfig(taps="all", seed=5)
    assert RankConfig.from_call(cfg, taps="penultimate", seed=0) == cfg  # defaults: the config's values stay
    assert RankConfig.from_call(cfg, taps="penultimate", seed=7).seed == 7
    assert RankConfig.from_call(None, seed=7) == RankConfig(seed=7)


def test_config_yaml_of_a_run_fed_back_reproduces_it(tmp_path):
    from test_pipeline_rank import MODELS, tiny_arrays

    out = tmp_path / "a"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first = rank_models(MODELS, tiny_arrays(), out=out, methods=["logme"], pretrained=False, image_size=32,
                            per_class=None, test_per_class=None, probe_C_grid=(0.1, 1.0), cache_dir=None,
                            progress=False, seed=1)
        record = yaml.safe_load((out / "config.yaml").read_text())
        cfg = RankConfig.from_yaml(out / "config.yaml", ignore_unknown=True).replace(progress=False)
        assert cfg.seed == 1 and cfg.probe_C_grid == (0.1, 1.0) and cfg.pretrained is False
        again = rank_models(record["models"], tiny_arrays(), config=cfg, out=tmp_path / "b")
    assert again["ranking"] == first["ranking"]
    assert again["scores"] == first["scores"]
    assert again["truth"]["accuracy"] == first["truth"]["accuracy"]
    assert yaml.safe_load((tmp_path / "b" / "config.yaml").read_text()) == record


def test_layers_config_round_trip_validation_and_signature():
    from nctransfer.layers import LayersConfig, analyze

    params = inspect.signature(analyze).parameters
    fields = {f.name for f in dataclasses.fields(LayersConfig)}
    assert fields == set(params) - {"model", "train", "test", "config"}
    for name in fields:
        assert getattr(LayersConfig(), name) == (tuple(params[name].default) if name == "C_grid"
                                                 else params[name].default), name
    cfg = LayersConfig(taps="blocks.*", metrics=("nc1", "vci"), probe=False, seed=2, threads=1)
    assert LayersConfig.from_yaml(cfg.to_yaml()) == cfg and LayersConfig.from_json(cfg.to_json()) == cfg
    assert LayersConfig.from_call(cfg, seed=0, probe=True) == cfg
    for kw, match in [({"threads": 0}, "threads must be a positive integer or None; got 0"),
                      ({"probe_val_fraction": 1.0}, r"probe_val_fraction must be a number in \(0, 1\)"),
                      ({"token_pool": "max"}, "token_pool must be one of")]:
        with pytest.raises(InputValueError, match=match):
            LayersConfig(**kw)


def test_analyze_from_a_layers_config_equals_keywords(tmp_path):
    from nctransfer.data import load_dataset
    from nctransfer.layers import LayersConfig, analyze
    from nctransfer.models import load_model

    model = load_model("efficientnet_lite0")
    tr = load_dataset("digits", "train", model=model, image_size=32, per_class=8)
    te = load_dataset("digits", "test", model=model, image_size=32, per_class=8)
    kw = dict(taps=["blocks.1.0", "penultimate"], C_grid=(1.0,), cache_dir=tmp_path, progress=False, seed=3)
    by_keywords = analyze(model, tr, te, **kw)
    by_config = analyze(model, tr, te, config=LayersConfig(**kw))
    same = json.dumps(by_config.rows, sort_keys=True, default=str) == json.dumps(by_keywords.rows, sort_keys=True,
                                                                                  default=str)  # NaN == NaN here
    assert same and by_config.taps == by_keywords.taps


def test_finetune_options_as_a_finetune_config():
    from nctransfer.finetune import FinetuneConfig

    cfg = RankConfig(finetune_options=FinetuneConfig(method="scl", unit="auto", epochs=5, lr=0.02,
                                                                    bn_policy="frozen"),
                     truth_finetune=FinetuneConfig(method="full", epochs=1, batch_size=16))
    # the options set away from the defaults; the pipeline picks the method
    assert cfg.finetune_options == {"unit": "auto", "epochs": 5, "lr": 0.02, "bn_policy": "frozen"}
    assert cfg.truth_finetune == {"epochs": 1, "batch_size": 16}
    assert RankConfig.from_yaml(cfg.to_yaml()) == cfg
    with pytest.raises(InputValueError, match="finetune_options must be a mapping of fine-tuning options"):
        RankConfig(finetune_options=3)
