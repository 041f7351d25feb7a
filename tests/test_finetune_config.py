"""FinetuneConfig / AutoUnitConfig: validation naming the field, aliases, JSON round trip (docs/methods.md#finetuning)."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from test_finetune_fixtures import single_thread  # noqa: F401
from nctransfer.exceptions import InputValueError
from nctransfer.finetune import AutoUnitConfig, FinetuneConfig, canonical_method
from nctransfer.finetune.trainer import cosine_lr


@pytest.mark.parametrize("alias,canon", [("lp", "linear_probe"), ("layer", "layer_ft"), ("scl", "scl_ft"),
                                         ("full", "full_ft"), ("SCL-FT", "scl_ft"), ("linear_probe", "linear_probe")])
def test_method_aliases(alias, canon):
    assert canonical_method(alias) == canon


def test_defaults_follow_paper_appendix_b():
    cfg = FinetuneConfig(method="lp")
    assert (cfg.momentum, cfg.weight_decay, cfg.lr, cfg.epochs) == (0.9, 1e-4, 0.1, 200)
    assert cfg.lr * cfg.min_lr_ratio == pytest.approx(1e-4)
    assert cfg.bn_policy == "update" and cfg.effective_backbone_lr == 0.1
    assert FinetuneConfig(method="full", backbone_lr=0.01).effective_backbone_lr == 0.01


@pytest.mark.parametrize("kwargs,match", [
    ({"method": "sgd"}, r"method.*'sgd'.*expected one of"),
    ({"method": "scl"}, r"unit is required"),
    ({"method": "layer"}, r"unit is required"),
    ({"method": "lp", "unit": "layer1.0"}, r"unit must be None"),
    ({"method": "layer", "unit": "x", "skip": "conv"}, r"skip applies to scl_ft only"),
    ({"method": "scl", "unit": "x", "skip": "zero"}, r"skip must be one of"),
    ({"method": "lp", "epochs": 0}, r"FinetuneConfig.epochs must be an integer >= 1; got 0"),
    ({"method": "lp", "batch_size": 2.5}, r"batch_size"),
    ({"method": "lp", "lr": 0}, r"FinetuneConfig.lr must be a number in \(0.0"),
    ({"method": "lp", "lr": float("nan")}, r"FinetuneConfig.lr"),
    ({"method": "lp", "momentum": 1.5}, r"momentum"),
    ({"method": "lp", "bn_policy": "eval"}, r"bn_policy must be one of"),
    ({"method": "lp", "device": "tpu"}, r"device"),
    ({"method": "lp", "reset_head": "yes"}, r"reset_head"),
    ({"method": "lp", "nc1_taps": 3}, r"nc1_taps"),
    ({"method": "lp", "unit": True}, r"unit"),
    ({"method": "lp", "nesterov": True, "momentum": 0.0}, r"nesterov"),
    ({"method": "lp", "auto": {"probe_steps": 0}}, r"AutoUnitConfig.probe_steps"),
    ({"method": "lp", "auto": {"criterion": "acc"}}, r"AutoUnitConfig.criterion must be one of"),
    ({"method": "lp", "auto": {"candidates": "some"}}, r"AutoUnitConfig.candidates"),
    ({"method": "lp", "auto": {"max_trainable_percent": 0}}, r"max_trainable_percent"),
])
def test_validation_names_the_field(kwargs, match):
    with pytest.raises(InputValueError, match=match):
        FinetuneConfig(**kwargs)


def test_unit_digit_string_becomes_index():
    assert FinetuneConfig(method="scl", unit="4").unit == 4
    assert FinetuneConfig(method="scl", unit="-1").unit == -1
    assert FinetuneConfig(method="scl", unit="auto").unit == "auto"


def test_from_dict_rejects_unknown_keys():
    with pytest.raises(InputValueError, match=r"unknown option\(s\) \['epoch'\]; valid options"):
        FinetuneConfig.from_dict({"method": "lp", "epoch": 3})


def test_json_file_round_trip(tmp_path):
    cfg = FinetuneConfig(method="scl", unit="layer3.0", skip="conv", epochs=3, nc1_taps=["layer1.0"],
                         auto=AutoUnitConfig(candidates=["layer2.0", 3], max_trainable_percent=10))
    p = tmp_path / "c.json"
    cfg.to_json(p)
    assert json.loads(p.read_text())["auto"]["max_trainable_percent"] == 10.0
    assert FinetuneConfig.from_json(p) == cfg
    assert FinetuneConfig.from_json(cfg.to_json()) == cfg
    assert "SGD momentum" in FinetuneConfig.help()["momentum"]


@settings(max_examples=40, deadline=None)
@given(method=st.sampled_from(["lp", "layer", "scl", "full"]), epochs=st.integers(1, 500),
       lr=st.floats(1e-6, 10), bs=st.integers(1, 4096), seed=st.integers(-(2**31), 2**31),
       skip=st.sampled_from(["pad", "conv"]), unit=st.one_of(st.integers(-20, 20), st.sampled_from(["a.0", "auto"])),
       pct=st.one_of(st.none(), st.floats(0.01, 100)))
def test_round_trip_property(method, epochs, lr, bs, seed, skip, unit, pct):
    kw = dict(method=method, epochs=epochs, lr=lr, batch_size=bs, seed=seed,
              auto={"max_trainable_percent": pct})
    if method in ("layer", "scl"):
        kw["unit"] = unit
    if method == "scl":
        kw["skip"] = skip
    cfg = FinetuneConfig(**kw)
    assert FinetuneConfig.from_json(cfg.to_json()) == cfg
    assert FinetuneConfig.from_dict(cfg.to_dict()) == cfg


def test_cosine_schedule_endpoints_and_monotone():
    lrs = [cosine_lr(0.1, t, 50, 1e-3) for t in range(50)]
    assert lrs[0] == pytest.approx(0.1) and lrs[-1] == pytest.approx(1e-4)
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))
    assert cosine_lr(0.1, 12, 25, 0.0) == pytest.approx(0.05)  # half way: half the rate
