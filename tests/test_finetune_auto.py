"""unit='auto': pick the unit whose probe run leaves the penultimate features most collapsed (Li et al., TMLR 2024, section 3.3
conjecture), under a parameter budget, reporting what was tried and why."""

import json

import pytest
import torch

from test_finetune_fixtures import signal_data as data, tiny_model, single_thread  # noqa: F401
from nctransfer.exceptions import InputValueError
from nctransfer.finetune import FinetuneConfig, choose_unit, count_parameters, scl_ft

FAST = dict(epochs=1, batch_size=8, lr=0.01, progress=False)


def test_auto_respects_budget_and_reports(tmp_path):
    torch.manual_seed(0)
    model = tiny_model("tv_resnet18")
    total = count_parameters(model)[1]
    res = scl_ft(model, data(), data(), unit="auto", out_dir=tmp_path,
                 auto={"candidates": "stage_first", "max_trainable_percent": 10.0, "probe_per_class": 4}, **FAST)
    rep = res.auto
    tried = [c["unit"] for c in rep["candidates"]]
    over = [c["unit"] for c in rep["skipped_over_budget"]]
    assert tried == ["layer1.0", "layer2.0", "layer3.0"] and over == ["layer4.0"]  # layer4.0 trains ~ 19% > 10%
    assert all(c["trainable_percent"] <= 10.0 for c in rep["candidates"])
    best = min(rep["candidates"], key=lambda c: c["train_nc1"])
    assert rep["chosen"] == best["unit"] == res.unit
    for phrase in ("lowest NC1", "within the budget", "16 training images"):
        assert phrase in rep["reason"]
    assert rep["probe"]["n_images"] == 16 and rep["probe"]["n_heldout"] == 16 and rep["criterion"] == "train_nc1"
    assert rep["probe"]["steps"] == 40 and rep["probe"]["epochs"] == 20  # 16 images, batch 8: 2 steps per epoch
    assert res.trainable_percent <= 10.0 and res.trainable_params < 0.1 * total + 10
    saved = json.loads((tmp_path / "result.json").read_text())["auto"]
    assert saved["chosen"] == res.unit and (tmp_path / "auto_unit.json").is_file()


def test_choose_unit_does_not_modify_the_model():
    model = tiny_model("tv_resnet18")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = FinetuneConfig(method="layer", unit="auto", **FAST,
                         auto={"candidates": ["layer3.1", -1], "probe_per_class": 2})
    rep = choose_unit(model, data(), cfg)
    assert [c["unit"] for c in rep["candidates"]] == ["layer3.1", "layer4.1"]
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not hasattr(model, "nctransfer_skip")


def test_budget_too_small_fails_clearly():
    cfg = FinetuneConfig(method="scl", unit="auto", **FAST, auto={"max_trainable_params": 10})
    with pytest.raises(InputValueError, match=r"no candidate fits the parameter budget.*the smallest needs"):
        choose_unit(tiny_model("tv_resnet18"), data(), cfg)


def test_heldout_criteria_rank_by_other_training_images():
    cfg = FinetuneConfig(method="scl", unit="auto", **FAST,
                         auto={"candidates": [4, 6], "probe_per_class": 4, "probe_steps": 4,
                               "criterion": "heldout_accuracy"})
    rep = choose_unit(tiny_model("tv_resnet18"), data(), cfg)
    accs = {c["unit"]: c["heldout_accuracy"] for c in rep["candidates"]}
    assert rep["chosen"] == max(accs, key=lambda u: (accs[u], -dict((c["unit"], c["trainable_params"])
                                                                   for c in rep["candidates"])[u]))
    assert all(0 <= c["heldout_nc1"] for c in rep["candidates"]) and "held-out training images" in rep["reason"]
    everything = FinetuneConfig(method="scl", unit="auto", **FAST,
                                auto={"probe_per_class": None, "criterion": "heldout_nc1"})
    with pytest.raises(InputValueError, match="needs training images outside the probe subset"):
        choose_unit(tiny_model("tv_resnet18"), data(), everything)
