"""nctransfer.models: bundled real weights, every source, classifier reset, files, errors."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from nctransfer.exceptions import InputValueError, NotFoundError, ShapeError
from nctransfer.models import (
    BUNDLED_MODELS,
    ModelInfo,
    WeightsUnavailableError,
    list_models,
    load_model,
    load_state_dict_flexible,
    save_model,
)


pytestmark = pytest.mark.usefixtures("one_thread")  # one thread (tests/conftest.py)


def _preprocess(img: np.ndarray, info: ModelInfo) -> torch.Tensor:
    """Independent reference preprocessing from the ModelInfo (PIL + torchvision)."""
    import torchvision.transforms as T
    from PIL import Image

    size = info.image_size[0]
    interp = T.InterpolationMode(info.interpolation)
    tf = T.Compose([T.Resize(int(round(size / info.crop_pct)), interpolation=interp), T.CenterCrop(size),
                    T.ToTensor(), T.Normalize(info.mean, info.std)])
    return tf(Image.fromarray(img)).unsqueeze(0)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(BUNDLED_MODELS))
def test_bundled_models_classify_chelsea_and_coffee(name):
    from skimage import data

    model = load_model(name)
    info = model.nctransfer_info
    assert info.source == "bundled" and info.pretrained and info.classifier == "classifier"
    assert info.input_size == (3, {"efficientnet_lite0": 224, "efficientnet_lite1": 240,
                                   "efficientnet_lite2": 260}[name], info.input_size[2])
    assert info.num_features == 1280 and info.num_classes == 1000
    assert not model.training
    with torch.inference_mode():
        logits = torch.cat([model(_preprocess(data.chelsea(), info)), model(_preprocess(data.coffee(), info))])
    assert logits.argmax(1).tolist() == [285, 967]  # Egyptian cat, espresso


def test_bundled_random_init_differs_and_has_same_info():
    a = load_model("efficientnet_lite0")
    b = load_model("efficientnet_lite0", pretrained=False)
    assert not b.nctransfer_info.pretrained and b.nctransfer_info.weights == "random-init"
    assert a.nctransfer_info.input_size == b.nctransfer_info.input_size
    assert not torch.equal(a.conv_stem.weight, b.conv_stem.weight)


def test_timm_and_torchvision_info_and_num_classes():
    m = load_model("timm:resnet18", pretrained=False, num_classes=7)
    info = m.nctransfer_info
    assert info.classifier == "fc" and info.num_features == 512 and info.num_classes == 7
    assert info.interpolation == "bicubic" and 0 < info.crop_pct <= 1
    assert m(torch.zeros(2, 3, 32, 32)).shape == (2, 7)
    tv = load_model("torchvision:resnet18", pretrained=False, num_classes=3)
    assert tv.nctransfer_info.classifier == "fc" and tv.fc.out_features == 3
    assert tv.nctransfer_info.crop_pct == pytest.approx(224 / 256)
    assert tv(torch.zeros(1, 3, 32, 32)).shape == (1, 3)
    vgg = load_model("tv:vgg11", pretrained=False, num_classes=4)  # classifier nested in a Sequential
    assert vgg.nctransfer_info.classifier == "classifier.6" and vgg.classifier[6].out_features == 4
    assert vgg.nctransfer_info.num_features == 4096


def test_remove_classifier_with_zero_classes():
    m = load_model("timm:resnet18", pretrained=False, num_classes=0)
    assert m(torch.zeros(2, 3, 32, 32)).shape == (2, 512)


@pytest.mark.parametrize("name, expected", [
    ("resnet18", "timm:resnet18"),
    ("timm:resnt18", "timm:resnet18"),
    ("torchvision:resnet181", "torchvision:resnet18"),
    ("efficientnet_lite5", "efficientnet_lite"),
    ("tim:resnet18", "timm"),
])
def test_unknown_names_suggest(name, expected):
    with pytest.raises(NotFoundError, match="Did you mean") as err:
        load_model(name)
    assert expected in str(err.value)


@pytest.mark.parametrize("bad", ["", None, 3])
def test_bad_name_type(bad):
    with pytest.raises(InputValueError, match="name"):
        load_model(bad)


def test_bad_num_classes():
    with pytest.raises(InputValueError, match="num_classes"):
        load_model("efficientnet_lite0", pretrained=False, num_classes=-1)


def test_offline_timm_explains_how_to_provide_weights(monkeypatch, tmp_path):
    hh = pytest.importorskip("huggingface_hub")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hh.constants, "HF_HUB_OFFLINE", True, raising=False)
    monkeypatch.setattr(hh.constants, "HF_HUB_CACHE", str(tmp_path / "hub"), raising=False)
    with pytest.raises(WeightsUnavailableError) as err:
        load_model("timm:resnet18")
    msg = str(err.value)
    for needle in ("file:", "HF_HOME", "TORCH_HOME", "efficientnet_lite0", "pretrained=False"):
        assert needle in msg


def test_offline_torchvision(monkeypatch, tmp_path):
    import urllib.error

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def no_network(*a, **k):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    with pytest.raises(WeightsUnavailableError, match="TORCH_HOME"):
        load_model("torchvision:resnet18")


def test_hf_missing_transformers_is_clear(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(ImportError, match=r"nctransfer\[hf\]"):
        load_model("hf:google/vit-base-patch16-224")


def test_hf_wrapper_with_tiny_random_vit():
    transformers = pytest.importorskip("transformers")
    from nctransfer.models import wrap_hf_model

    cfg = transformers.ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
                                 num_attention_heads=2, intermediate_size=64, num_labels=5)
    m = wrap_hf_model(transformers.ViTForImageClassification(cfg), "hf:tiny", pretrained=False)
    assert m(torch.zeros(2, 3, 32, 32)).shape == (2, 5)
    assert m.nctransfer_info.classifier == "model.classifier"


def test_file_state_dict_with_arch_and_full_module(tmp_path):
    src = load_model("timm:resnet18", pretrained=False, num_classes=5)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ref = src(x)
    torch.save(src.state_dict(), tmp_path / "w.pth")
    for m in (load_model(f"file:{tmp_path / 'w.pth'}?arch=timm:resnet18"),
              load_model(f"file:{tmp_path / 'w.pth'}", arch="timm:resnet18")):
        assert m.nctransfer_info.source == "file" and m.nctransfer_info.num_classes == 5  # inferred from the head
        with torch.no_grad():
            assert torch.allclose(m(x), ref)
    torch.save(src, tmp_path / "full.pt")
    with pytest.raises(InputValueError, match="allow_pickle=True"):  # a pickled module runs code: opt-in only
        load_model(f"file:{tmp_path / 'full.pt'}")
    full = load_model(f"file:{tmp_path / 'full.pt'}", allow_pickle=True)
    assert full.nctransfer_info.classifier == "fc"
    with torch.no_grad():
        assert torch.allclose(full(x), ref)
    with pytest.raises(InputValueError, match=r"\?arch="):
        load_model(f"file:{tmp_path / 'w.pth'}")
    with pytest.raises(NotFoundError, match="does not exist"):
        load_model(f"file:{tmp_path / 'nope.pth'}")
    with pytest.raises(InputValueError, match="unknown option"):
        load_model(f"file:{tmp_path / 'w.pth'}?arc=timm:resnet18")
    with pytest.raises(ShapeError):
        load_model(f"file:{tmp_path / 'w.pth'}?arch=timm:resnet34")


def test_save_model_round_trip_keeps_info(tmp_path):
    m = load_model("efficientnet_lite0", num_classes=10)
    path = save_model(m, tmp_path / "ft.pt")
    back = load_model(f"file:{path}")
    assert back.nctransfer_info.input_size == m.nctransfer_info.input_size
    assert back.nctransfer_info.mean == m.nctransfer_info.mean and back.nctransfer_info.num_classes == 10
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(back(x), m(x))


def test_state_dict_by_order_mapping():
    a = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    sd = {f"renamed_{i}": v for i, v in enumerate(a.state_dict().values())}
    b = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    assert load_state_dict_flexible(b, sd) == "by-order"
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    bad = {k: v for k, v in list(sd.items())[:3]}
    with pytest.raises(ShapeError, match="entries"):
        load_state_dict_flexible(b, bad)


def test_list_models():
    assert list_models("bundled") == sorted(BUNDLED_MODELS)
    assert "timm:resnet18" in list_models("timm", "resnet1*")
    assert "torchvision:resnet18" in list_models("torchvision", "resnet*")
