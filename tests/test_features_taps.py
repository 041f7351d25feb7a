"""nctransfer.features: unit discovery (counts, order, shapes), penultimate = pre-logits, selection, recorder."""

from __future__ import annotations

import pytest
import torch

from nctransfer.exceptions import InputValueError, NotFoundError
from nctransfer.features import (
    HookNotFiredError,
    TapRecorder,
    discover_units,
    infer_widths,
    list_taps,
    pool_features,
    resolve_taps,
    select_taps,
)
from nctransfer.models import load_model

RESNET18 = ["layer1.0", "layer1.1", "layer2.0", "layer2.1", "layer3.0", "layer3.1", "layer4.0", "layer4.1"]
RESNET18_W = [64, 64, 128, 128, 256, 256, 512, 512, 512]
LITE0 = ["blocks.0.0", "blocks.1.0", "blocks.1.1", "blocks.2.0", "blocks.2.1", "blocks.3.0", "blocks.3.1",
         "blocks.3.2", "blocks.4.0", "blocks.4.1", "blocks.4.2", "blocks.5.0", "blocks.5.1", "blocks.5.2",
         "blocks.5.3", "blocks.6.0"]
LITE0_W = [16, 24, 24, 40, 40, 80, 80, 80, 112, 112, 112, 192, 192, 192, 192, 320, 1280]


pytestmark = pytest.mark.usefixtures("one_thread")  # one thread (tests/conftest.py)


@pytest.fixture(scope="module")
def tiny_vit():
    return load_model("timm:vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, depth=3)


@pytest.mark.parametrize("name", ["torchvision:resnet18", "timm:resnet18"])
def test_resnet18_units(name):
    m = load_model(name, pretrained=False)
    units = infer_widths(m, discover_units(m, include_penultimate=True), input_size=(3, 64, 64))
    assert [u.name for u in units] == RESNET18 + ["penultimate"]
    assert [u.index for u in units] == list(range(9))
    assert [u.width for u in units] == RESNET18_W
    assert units[0].out_shape == (64, 16, 16) and units[-2].out_shape == (512, 2, 2)
    assert units[-1].path == "fc" and units[-1].kind == "input"
    assert all(u.module is m.get_submodule(u.path) for u in units)


def test_efficientnet_lite0_units():
    m = load_model("efficientnet_lite0", pretrained=False)
    units = infer_widths(m, input_size=(3, 64, 64))
    assert [u.name for u in units] == LITE0 + ["penultimate"]
    assert [u.width for u in units] == LITE0_W


def test_tiny_vit_units_and_token_pooling(tiny_vit):
    units = infer_widths(tiny_vit, input_size=(3, 32, 32))
    assert [u.name for u in units] == ["blocks.0", "blocks.1", "blocks.2", "penultimate"]
    assert units[0].out_shape == (17, 192) and [u.width for u in units] == [192] * 4
    x = torch.randn(2, 3, 32, 32)
    raw = {}
    h = tiny_vit.blocks[1].register_forward_hook(lambda m, a, o: raw.__setitem__("b1", o))
    try:
        for pool, ref in (("mean", lambda t: t.mean(1)), ("cls", lambda t: t[:, 0])):
            with TapRecorder(tiny_vit, ["blocks.1"], token_pool=pool) as rec, torch.no_grad():
                tiny_vit(x)
                f = rec.collect()
            assert torch.allclose(f["blocks.1"], ref(raw["b1"]))
    finally:
        h.remove()


def _prelogits(m, x):
    if hasattr(m, "forward_head"):
        return m.forward_head(m.forward_features(x), pre_logits=True)
    # torchvision ResNet
    t = m.layer4(m.layer3(m.layer2(m.layer1(m.maxpool(m.relu(m.bn1(m.conv1(x))))))))
    return torch.flatten(m.avgpool(t), 1)


@pytest.mark.parametrize("name", ["torchvision:resnet18", "timm:resnet18", "efficientnet_lite0", "vit"])
def test_penultimate_equals_prelogits(name, tiny_vit):
    m = tiny_vit if name == "vit" else load_model(name, pretrained=name == "efficientnet_lite0")
    x = torch.randn(3, 3, 32, 32)
    with TapRecorder(m, "penultimate") as rec, torch.no_grad():
        logits = m(x)
        pen = rec.collect()["penultimate"]
    with torch.no_grad():
        ref = _prelogits(m, x)
    assert pen.shape == ref.shape
    torch.testing.assert_close(pen, ref, rtol=0, atol=0)
    head = m.get_submodule(m.nctransfer_info.classifier)
    torch.testing.assert_close(head(pen), logits)


def test_conv_map_pooled_by_adaptive_average():
    m = load_model("timm:resnet18", pretrained=False)
    x = torch.randn(2, 3, 48, 48)
    raw = {}
    h = m.layer2[1].register_forward_hook(lambda mod, a, o: raw.__setitem__("o", o))
    try:
        with TapRecorder(m, ["layer2.1", "layer1.0"]) as rec, torch.no_grad():
            m(x)
            f = rec.collect()
    finally:
        h.remove()
    assert list(f) == ["layer1.0", "layer2.1"]  # forward order, not selector order
    torch.testing.assert_close(f["layer2.1"], torch.nn.functional.adaptive_avg_pool2d(raw["o"], 1).flatten(1))


def test_selection_semantics():
    m = load_model("timm:resnet18", pretrained=False)
    allt = RESNET18 + ["penultimate"]
    assert select_taps(m) == allt and select_taps(m, "all") == allt and list_taps(m) == allt
    assert select_taps(m, 2) == ["layer4.1", "penultimate"]       # timm: int n = last n
    assert select_taps(m, [0, -1]) == ["layer1.0", "penultimate"]  # negatives from the end
    assert select_taps(m, [-2]) == ["layer4.1"]
    assert select_taps(m, "layer3.1") == ["layer3.1"]
    assert select_taps(m, r"layer\d\.0") == ["layer1.0", "layer2.0", "layer3.0", "layer4.0"]
    assert select_taps(m, ["penultimate", "layer1.1", 0]) == ["layer1.0", "layer1.1", "penultimate"]
    assert select_taps(m, "last") == ["layer4.1"]
    assert [u.name for u in resolve_taps(m, "layer4.*")] == ["layer4.0", "layer4.1"]


@pytest.mark.parametrize("bad, exc, match", [
    (0, InputValueError, r"\[1, 9\]"),
    (10, InputValueError, r"\[1, 9\]"),
    ([9], InputValueError, r"out of range \[-9, 8\]"),
    ("layer5.0", NotFoundError, "Candidates .*layer1.0"),
    ("layr1.0", NotFoundError, "Did you mean: layer1.0"),
    (3.5, InputValueError, "expected None"),
    (True, InputValueError, "expected None"),
])
def test_unknown_selector_lists_candidates(bad, exc, match):
    m = load_model("timm:resnet18", pretrained=False)
    with pytest.raises(exc, match=match):
        select_taps(m, bad)


def _n_hooks(m):
    return sum(len(mod._forward_hooks) + len(mod._forward_pre_hooks) for mod in m.modules())


def test_hooks_removed_even_on_error():
    m = load_model("timm:resnet18", pretrained=False)
    with pytest.raises(RuntimeError, match="boom"):
        with TapRecorder(m, "all"):
            assert _n_hooks(m) == 9
            raise RuntimeError("boom")
    assert _n_hooks(m) == 0


def test_hook_never_fired_is_an_error():
    a = load_model("timm:resnet18", pretrained=False)
    b = load_model("timm:resnet18", pretrained=False)
    with TapRecorder(a, ["layer1.0", "penultimate"]) as rec, torch.no_grad():
        b(torch.zeros(1, 3, 32, 32))  # the wrong model: a's hooks never fire
        with pytest.raises(HookNotFiredError, match="layer1.0"):
            rec.collect()


def test_sink_receives_every_tap():
    m = load_model("efficientnet_lite0", pretrained=False)
    seen = []
    with TapRecorder(m, "all", sink=lambda n, t: seen.append((n, tuple(t.shape)))) as rec, torch.no_grad():
        m(torch.zeros(2, 3, 32, 32))
        rec.check_fired()
    assert [n for n, _ in seen] == LITE0 + ["penultimate"]
    assert [s[1] for _, s in seen] == LITE0_W


def test_pool_features_shapes_and_errors():
    assert pool_features(torch.ones(2, 5)).shape == (2, 5)
    assert pool_features(torch.ones(2, 5, 3, 3)).shape == (2, 5)
    t = torch.arange(24.0).reshape(2, 3, 4)
    assert torch.equal(pool_features(t, "cls"), t[:, 0]) and torch.equal(pool_features(t), t.mean(1))
    assert pool_features(torch.ones(2, 5, dtype=torch.float16)).dtype == torch.float32
    with pytest.raises(ValueError, match="cannot pool"):
        pool_features(torch.ones(5))
    with pytest.raises(InputValueError, match="token_pool"):
        TapRecorder(torch.nn.Linear(2, 2), token_pool="max")


def test_generic_fallback_units():
    m = torch.nn.Sequential()
    m.add_module("stem", torch.nn.Conv2d(3, 4, 3))
    m.add_module("act", torch.nn.ReLU())
    m.add_module("body", torch.nn.Conv2d(4, 6, 3))
    m.add_module("pool", torch.nn.AdaptiveAvgPool2d(1))
    m.add_module("flat", torch.nn.Flatten())
    m.add_module("fc", torch.nn.Linear(6, 2))
    units = infer_widths(m, input_size=(3, 8, 8))
    assert [(u.name, u.width) for u in units] == [("stem", 4), ("body", 6), ("penultimate", 6)]


def test_hf_vit_encoder_layers_and_penultimate():
    transformers = pytest.importorskip("transformers")
    from nctransfer.models import wrap_hf_model

    cfg = transformers.ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=3,
                                 num_attention_heads=2, intermediate_size=64, num_labels=5)
    hf = transformers.ViTForImageClassification(cfg).eval()
    m = wrap_hf_model(hf, "hf:tiny", pretrained=False)
    units = infer_widths(m, input_size=(3, 32, 32))
    assert len(units) == 4 and units[-1].name == "penultimate"
    assert all(u.name.startswith("model.vit.") and u.name.endswith(str(i)) for i, u in enumerate(units[:3]))
    assert [u.out_shape for u in units] == [(17, 32)] * 3 + [(32,)]
    x = torch.randn(2, 3, 32, 32)
    with TapRecorder(m, "penultimate") as rec, torch.no_grad():
        m(x)
        pen = rec.collect()["penultimate"]
        ref = hf.vit(pixel_values=x).last_hidden_state[:, 0]  # the HF classifier reads the (normed) class token
    torch.testing.assert_close(pen, ref)


def test_torchvision_vit_and_efficientnet_units():
    from torchvision.models import VisionTransformer

    vit = VisionTransformer(image_size=32, patch_size=8, num_layers=3, num_heads=2, hidden_dim=32, mlp_dim=64)
    units = infer_widths(vit, input_size=(3, 32, 32))
    assert [u.name for u in units] == [f"encoder.layers.encoder_layer_{i}" for i in range(3)] + ["penultimate"]
    assert units[-1].path == "heads.head" and [u.width for u in units] == [32] * 4
    eff = load_model("torchvision:efficientnet_b0", pretrained=False)
    assert list_taps(eff)[:3] == ["features.0", "features.1.0", "features.2.0"] and len(list_taps(eff)) == 19
