"""Contract (peft's key test): after a few optimiser steps exactly the selected parameters
changed and every other parameter is bit-identical, for every method on timm/torchvision ResNet18,
EfficientNet-Lite0 and a tiny ViT (random weights, 32 px); BatchNorm statistics follow the documented policy."""

import copy

import pytest
import torch
from torch.utils.data import TensorDataset

from test_finetune_fixtures import ARCHS, tiny_model, single_thread  # noqa: F401
from nctransfer.finetune import count_parameters, finetune

FAST = dict(epochs=1, batch_size=4, lr=0.01, progress=False, seed=0)


def tiny_data(n=8, k=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, 32, 32, generator=g)
    y = torch.arange(n) % k
    ds = TensorDataset(x, y)
    ds.targets = y
    return ds


@pytest.mark.parametrize("arch", list(ARCHS))
@pytest.mark.parametrize("method,unit", [("lp", None), ("layer", 2), ("scl", 2), ("full", None)])
def test_only_selected_parameters_change(arch, method, unit):
    model = tiny_model(arch)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    ds = tiny_data()
    res = finetune(model, ds, ds, method=method, unit=unit, **FAST)
    after = dict(res.model.named_parameters())
    selected = set(res.trainable_names)
    assert selected and len(res.trainable_names) == len(selected)
    changed = {n for n, p in before.items() if not torch.equal(p, after[n])}
    assert changed == selected & set(before), (sorted(changed ^ (selected & set(before)))[:5])
    if method == "scl":  # the skip branch (no parameters for 'pad') is part of the model
        assert not [n for n in after if n.startswith("nctransfer_skip")]
    assert res.epochs_completed == 1 and len(res.history) == 1
    assert (res.trainable_params, res.total_params) == count_parameters(res.model, res.trainable_names)
    assert res.trainable_percent == pytest.approx(100 * res.trainable_params / res.total_params)
    if method == "full":
        assert res.trainable_percent == 100.0
    if method == "lp":
        head = res.model.nctransfer_info.classifier
        assert all(n.startswith(head + ".") for n in selected)


def test_scl_conv_branch_parameters_train():
    model = tiny_model("tv_resnet18")
    ds = tiny_data()
    res = finetune(model, ds, ds, method="scl", unit="layer2.0", skip="conv", **FAST)
    branch = [n for n in res.trainable_names if n.startswith("nctransfer_skip.")]
    assert branch == ["nctransfer_skip.conv.weight", "nctransfer_skip.bn.weight", "nctransfer_skip.bn.bias"]
    assert res.skip == "conv" and res.unit == "layer2.0"


@pytest.mark.parametrize("policy", ["update", "frozen"])
def test_batchnorm_running_stats_policy(policy):
    """bn_policy='update' (default, Li et al., TMLR 2024, appendix B): every BN, frozen or not, updates its running statistics
    on the downstream data, also in the linear probe; 'frozen': BNs outside the trained modules keep them."""
    model = tiny_model("tv_resnet18")
    before = copy.deepcopy(model.state_dict())
    ds = tiny_data()
    res = finetune(model, ds, ds, method="layer", unit="layer4.0", bn_policy=policy, **FAST)
    sd = res.model.state_dict()
    frozen_bn = "layer1.0.bn1.running_mean"
    trained_bn = "layer4.0.bn1.running_mean"
    assert not torch.equal(sd[trained_bn], before[trained_bn])
    assert torch.equal(sd[frozen_bn], before[frozen_bn]) == (policy == "frozen")
    for n, p in res.model.named_parameters():  # parameters still follow the contract
        assert torch.equal(p, before[n]) == (n not in set(res.trainable_names))


def test_linear_probe_updates_bn_stats_without_touching_weights():
    model = tiny_model("efficientnet_lite0")
    before = copy.deepcopy(model.state_dict())
    ds = tiny_data()
    res = finetune(model, ds, ds, method="lp", **FAST)
    sd = res.model.state_dict()
    stats = [k for k in sd if k.endswith("running_mean")]
    assert all(not torch.equal(sd[k], before[k]) for k in stats)


def test_nc1_of_every_tap_each_epoch():
    """nc1_taps='all' records the layer-wise NC1 of every unit (Li et al., TMLR 2024, figure 10) next to the penultimate NC1."""
    ds = tiny_data(n=16)
    res = finetune(tiny_model("tv_resnet18"), ds, ds, method="scl", unit="layer2.0", nc1_taps="all",
                   **{**FAST, "epochs": 2})
    assert len(res.history) == 2
    for h in res.history:
        assert list(h["tap_nc1"]) == ["layer1.0", "layer1.1", "layer2.0", "layer2.1", "layer3.0", "layer3.1",
                                      "layer4.0", "layer4.1"]
        assert all(v >= 0 for v in h["tap_nc1"].values()) and h["penultimate_nc1"] >= 0
    with pytest.raises(Exception, match=r"nc1_taps: unknown taps \['layer9'\]"):
        finetune(tiny_model("tv_resnet18"), ds, ds, method="lp", nc1_taps=["layer9"], **FAST)


def test_penultimate_nc1_matches_metrics_on_extracted_features():
    """The recorded NC1 is nctransfer.metrics.nc1 of the classifier input over the training set (eval mode)."""
    from nctransfer.features import TapRecorder
    from nctransfer.metrics.collapse import nc1

    ds = tiny_data(n=16)
    res = finetune(tiny_model("tv_resnet18"), ds, ds, method="scl", unit="layer3.0", **FAST)
    m = res.model.eval()
    with torch.no_grad(), TapRecorder(m, ["penultimate"]) as rec:
        m(ds.tensors[0])
        h = rec.collect()["penultimate"]
    assert res.penultimate_nc1 == pytest.approx(nc1(h.double().numpy(), ds.tensors[1].numpy()), rel=1e-6)
