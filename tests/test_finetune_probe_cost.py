"""unit='auto' with a stated cost: the probe's time budget is respected and reported in result.json, and the probe
replays cached features of the frozen part instead of recomputing them."""

import json

import pytest
import torch

from test_finetune_fixtures import signal_data as data, single_thread, tiny_model  # noqa: F401
from nctransfer.finetune import FinetuneConfig, attach_skip, choose_unit, resolve_unit, scl_ft
from nctransfer.finetune.auto import estimate_training_seconds, probe_budget_seconds
from nctransfer.finetune.config import AutoUnitConfig
from nctransfer.finetune.prefix_cache import PrefixReplay

FAST = dict(epochs=1, batch_size=8, lr=0.01, progress=False)


def test_probe_time_budget_is_respected_and_reported(tmp_path):
    res = scl_ft(tiny_model("tv_resnet18"), data(), data(), unit="auto", out_dir=tmp_path,
                 auto={"max_probe_seconds": 1e-3, "probe_per_class": 2, "probe_steps": 2}, **FAST)
    rep = res.auto
    # the first (deepest) candidate is always probed; then the budget is spent and the others are skipped
    assert [c["unit"] for c in rep["candidates"]] == ["layer4.1"] == [res.unit]
    assert [c["unit"] for c in rep["skipped_time_budget"]] == ["layer1.0", "layer1.1", "layer2.0", "layer2.1",
                                                               "layer3.0", "layer3.1", "layer4.0"]
    tb = rep["time_budget"]
    assert tb["seconds"] == 1e-3 and tb["probed"] == 1 and tb["not_probed"] == 7 and tb["respected"] is False
    assert "7 shallower one(s) not probed: the time budget" in rep["reason"]
    saved = json.loads((tmp_path / "result.json").read_text())
    assert saved["auto"]["probe_seconds"] == rep["probe_seconds"] > 0
    assert saved["timing"]["probe"] == pytest.approx(rep["probe_seconds"])
    assert saved["timing"]["total"] >= saved["timing"]["probe"] + saved["timing"]["train"]


def test_generous_budget_probes_every_candidate_and_stays_within_it():
    cfg = FinetuneConfig(method="scl", unit="auto", **FAST,
                         auto={"candidates": "stage_first", "probe_per_class": 2, "probe_steps": 2,
                               "max_probe_fraction": None, "max_probe_seconds": 600.0})
    rep = choose_unit(tiny_model("tv_resnet18"), data(), cfg)
    assert [c["unit"] for c in rep["candidates"]] == ["layer1.0", "layer2.0", "layer3.0", "layer4.0"]
    assert rep["skipped_time_budget"] == [] and rep["time_budget"]["respected"] is True
    assert 0 < sum(c["probe_seconds"] for c in rep["candidates"]) <= rep["probe_seconds"] <= 600.0
    assert all(c["prefix_cache"]["images"] == 16 for c in rep["candidates"])  # 8 probe + 8 held-out images
    assert rep["probe"]["shared_cache"]["units"] == 4  # one pass cached the frozen part of every candidate


def test_budget_formula_and_training_estimate():
    a = AutoUnitConfig()
    assert (a.max_probe_fraction, a.min_probe_seconds, a.max_probe_seconds) == (0.5, 30.0, None)
    assert probe_budget_seconds(a, 100.0) == 50.0  # half the estimated training time
    assert probe_budget_seconds(a, 10.0) == 30.0  # never below min_probe_seconds
    assert probe_budget_seconds(AutoUnitConfig(max_probe_seconds=5.0), 100.0) == 5.0
    assert probe_budget_seconds(AutoUnitConfig(max_probe_fraction=None), 100.0) is None
    with pytest.raises(Exception, match=r"max_probe_fraction must be a number in \(0.0, inf\) or None; got -1"):
        AutoUnitConfig(max_probe_fraction=-1)
    model = tiny_model("tv_resnet18")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    est = estimate_training_seconds(model, data(n=20), FinetuneConfig(method="lp", epochs=3, batch_size=8))
    assert est["steps"] == 9 and est["batch_size"] == 8  # 3 epochs x ceil(20 / 8)
    assert est["seconds"] == pytest.approx(9 * 2.0 * est["forward_seconds"]) and est["forward_seconds"] > 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("arch,unit,inside", [("tv_resnet18", "layer3.0", "layer1.0.conv1"),
                                              ("efficientnet_lite0", "blocks.5.0", "blocks.1.0.conv_pw"),
                                              ("vit_tiny", "blocks.6", "blocks.2.attn")])
def test_prefix_replay_gives_the_same_logits_without_running_the_frozen_part(arch, unit, inside):
    ds = data(n=12)
    model = tiny_model(arch)
    u = resolve_unit(model, unit)
    attach_skip(model, u, "conv", image_size=(32, 32))
    model.eval()
    with torch.no_grad():
        ref = model(ds.tensors[0])
    rep = PrefixReplay.build(model, u.module, ds, batch_size=5)
    assert rep is not None and rep.level == "last" and rep.n == 12
    calls = {"inside": 0, "unit": 0}
    model.get_submodule(inside).register_forward_pre_hook(lambda m, a: calls.__setitem__("inside", calls["inside"] + 1))
    u.module.register_forward_pre_hook(lambda m, a: calls.__setitem__("unit", calls["unit"] + 1))
    view = rep.view(torch.arange(12).flip(0).numpy())  # any order of the cached images
    x, y = view.get_batch(list(range(12)))
    with torch.no_grad():
        out = model(x)
    assert calls == {"inside": 0, "unit": 1}
    assert torch.equal(y, ds.tensors[1].flip(0))
    torch.testing.assert_close(out, ref.flip(0), rtol=1e-4, atol=1e-5)
    rep.remove()
    with torch.no_grad():
        model(ds.tensors[0])
    assert calls["inside"] == 1  # the model's own forward is back


@pytest.mark.parametrize("arch", ["tv_resnet18", "efficientnet_lite0", "vit_tiny"])
def test_one_shared_pass_replays_every_unit(arch):
    import copy

    from nctransfer.finetune import list_units
    from nctransfer.finetune.prefix_cache import SharedPrefixCache

    ds = data(n=10)
    base = tiny_model(arch).eval()
    units = {u.name: resolve_unit(base, u.name).module for u in list_units(base)}
    shared = SharedPrefixCache.build(base, units, ds, batch_size=4)
    assert sorted(shared.calls) == sorted(units) and len(shared.tensors) == len(units)
    for name in units:
        m = copy.deepcopy(base)
        u = resolve_unit(m, name)
        attach_skip(m, u, "conv", image_size=(32, 32))
        m.eval()
        with torch.no_grad():
            ref = m(ds.tensors[0])
        rep = shared.replay(m, name, u.module)
        assert rep is not None, name
        x, _ = rep.view(list(range(10))).get_batch(list(range(10)))
        with torch.no_grad():
            torch.testing.assert_close(m(x), ref, rtol=1e-4, atol=1e-5)


def test_cached_probe_equals_the_uncached_probe():
    """With frozen BatchNorm statistics the frozen part is the same function in both probes, so the cached probe
    reproduces the numbers of the probe that recomputes it at every step."""
    common = dict(method="scl", unit="auto", bn_policy="frozen", **FAST)
    auto = {"candidates": ["layer3.0", "layer4.0"], "probe_per_class": 3, "probe_steps": 4,
            "max_probe_fraction": None}
    cached = choose_unit(tiny_model("tv_resnet18"), data(), FinetuneConfig(**common, auto=auto))
    plain = choose_unit(tiny_model("tv_resnet18"), data(),
                        FinetuneConfig(**common, auto={**auto, "cache_features": False}))
    assert all(c["prefix_cache"] is not None for c in cached["candidates"])
    assert all(c["prefix_cache"] is None for c in plain["candidates"])
    for a, b in zip(cached["candidates"], plain["candidates"]):
        assert a["unit"] == b["unit"]
        for key in ("train_nc1", "heldout_nc1", "probe_train_loss"):
            assert a[key] == pytest.approx(b[key], rel=1e-4), key
    assert cached["chosen"] == plain["chosen"]


def test_cli_probe_budget_options(tmp_path, capsys):
    from nctransfer.cli.main import main

    out = tmp_path / "run"
    assert main(["finetune", "--model", "torchvision:resnet18", "--no-pretrained", "--data", "digits", "--image-size",
                 "32", "--epochs", "1", "--batch-size", "10", "--lr", "0.01", "--no-progress", "--method", "scl",
                 "--unit", "auto", "--auto-candidates", "4,6", "--auto-probe-per-class", "2", "--auto-probe-steps",
                 "2", "--auto-max-probe-seconds", "0.001", "--auto-no-cache", "--per-class", "4",
                 "--test-per-class", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "auto unit probe: 1 candidate(s) probed in" in printed and "budget 0 s; 1 not probed" in printed
    r = json.loads((out / "result.json").read_text())
    assert r["auto"]["time_budget"]["seconds"] == 0.001 and r["config"]["auto"]["cache_features"] is False
    assert [c["unit"] for c in r["auto"]["candidates"]] == ["layer4.0"] and r["unit"] == "layer4.0"
    assert r["auto"]["candidates"][0]["prefix_cache"] is None and r["timing"]["probe"] > 0


@pytest.mark.parametrize("arch", ["tv_resnet18", "efficientnet_lite0"])
def test_parameter_count_without_a_copy_equals_the_attached_branch_count(arch):
    """SCL 'pad' has no parameters, so the budget check counts on the model itself (no deep copy per candidate)."""
    import copy

    from nctransfer.finetune import count_parameters, list_units, trainable_parameter_names
    from nctransfer.finetune.auto import _trainable_count

    model = tiny_model(arch)
    cfg = FinetuneConfig(method="scl", unit="auto")
    for u in list_units(model):
        m = copy.deepcopy(model)
        mu = resolve_unit(m, u.name)
        attach_skip(m, mu, "pad", image_size=(32, 32))
        assert _trainable_count(model, u, cfg, (32, 32)) == count_parameters(
            m, trainable_parameter_names(m, "scl_ft", mu)), u.name
