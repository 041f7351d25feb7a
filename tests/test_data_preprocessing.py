"""The model's own preprocessing: timm's ``create_transform`` of the model's data configuration, torchvision's
``weights.transforms()``, the Hugging Face image processor; a plain ``nn.Module`` with ``image_size/mean/std``;
grayscale repeated to three channels only when the model expects three."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

from nctransfer.data import EvalTransform, eval_transform, load_dataset
from nctransfer.exceptions import InputValueError
from nctransfer.models import load_model


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (61, 83, 3), dtype=np.uint8))
    gray = Image.fromarray(rng.integers(0, 256, (40, 30), dtype=np.uint8))
    return rgb, gray


@pytest.mark.parametrize("name", ["efficientnet_lite0", "timm:resnet18"])
def test_timm_transform_equals_timm_create_transform(name, images):
    import timm.data

    model = load_model(name, pretrained=False)  # the architecture's data configuration; no download
    ref = timm.data.create_transform(**timm.data.resolve_model_data_config(model))
    t = eval_transform(model)
    rgb, gray = images
    assert torch.equal(t(rgb), ref(rgb))
    assert torch.equal(t(gray), ref(gray.convert("RGB")))  # grayscale repeated for a 3-channel model
    assert torch.equal(t(np.asarray(rgb)), ref(rgb))  # arrays and uint8 tensors give the same input
    assert torch.equal(t(torch.from_numpy(np.array(rgb)).permute(2, 0, 1)), ref(rgb))
    cfg = dict(timm.data.resolve_model_data_config(model), input_size=(3, 48, 48), crop_pct=1.0)
    assert torch.equal(eval_transform(model, image_size=48, crop_pct=1.0)(rgb),
                       timm.data.create_transform(**cfg)(rgb))


def test_bundled_model_data_config_is_its_true_preprocessing():
    import timm.data

    model = load_model("efficientnet_lite0", pretrained=False)
    cfg = timm.data.resolve_model_data_config(model)
    info = model.nctransfer_info
    assert cfg["mean"] == pytest.approx(info.mean) and cfg["std"] == pytest.approx(info.std)
    assert cfg["crop_pct"] == info.crop_pct == 1.0 and cfg["interpolation"] == "bicubic"
    assert cfg["mean"][0] == pytest.approx(127 / 255) and cfg["std"][0] == pytest.approx(128 / 255)


def test_timm_resnet_lanczos_config_is_not_approximated(images):
    import timm.data

    model = load_model("timm:resnet18", pretrained=False)
    model.pretrained_cfg = dict(model.pretrained_cfg, interpolation="lanczos")
    ref = timm.data.create_transform(**timm.data.resolve_model_data_config(model))
    assert "lanczos" in repr(ref)
    assert torch.equal(eval_transform(model)(images[0]), ref(images[0]))


def test_folder_items_get_the_models_own_transform(tmp_path, images):
    import timm.data

    model = load_model("timm:resnet18", pretrained=False)
    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        images[0].save(tmp_path / c / "x.png")
        images[1].save(tmp_path / c / "y.png")
    ds = load_dataset(tmp_path, "all", model=model)
    ref = timm.data.create_transform(**timm.data.resolve_model_data_config(model))
    assert torch.equal(ds[0][0], ref(images[0])) and torch.equal(ds[1][0], ref(images[1].convert("RGB")))


def test_torchvision_weights_transforms(images):
    import torchvision.models as tvm

    model = load_model("torchvision:resnet18", pretrained=False)
    ref = tvm.get_model_weights("resnet18").DEFAULT.transforms()
    torch.testing.assert_close(eval_transform(model)(images[0]), ref(images[0]), rtol=0, atol=0)
    assert eval_transform(model, image_size=40)(images[0]).shape == (3, 40, 40)


def test_hugging_face_image_processor(images):
    transformers = pytest.importorskip("transformers")
    from nctransfer.models import wrap_hf_model

    cfg = transformers.ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1,
                                 num_attention_heads=2, intermediate_size=64, num_labels=3)
    proc = transformers.ViTImageProcessor(size={"height": 32, "width": 32}, image_mean=[0.4, 0.5, 0.6],
                                          image_std=[0.2, 0.25, 0.3])
    model = wrap_hf_model(transformers.ViTForImageClassification(cfg), "hf:tiny", proc, pretrained=False)
    ref = proc(images=images[0], return_tensors="pt")["pixel_values"][0]
    torch.testing.assert_close(eval_transform(model)(images[0]), ref)


def test_plain_module_needs_transform_or_size_mean_std():
    X = np.arange(2 * 6 * 6, dtype=np.uint8).reshape(2, 6, 6)
    y = np.array([0, 1])
    gray_net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2 * 6 * 6, 2))
    rgb_net = nn.Sequential(nn.Conv2d(3, 2, 3), nn.Flatten(), nn.Linear(2 * 6 * 6, 2))
    with pytest.raises(InputValueError, match="plain nn.Module without preprocessing metadata; pass transform="):
        load_dataset((X, y), model=gray_net)
    g = load_dataset((X, y), model=gray_net, image_size=8, mean=(0.5,), std=(0.25,))
    assert isinstance(g.transform, EvalTransform) and g[0][0].shape == (1, 8, 8)  # grayscale kept: 1 channel
    r = load_dataset((X, y), model=rgb_net, image_size=8, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    assert r[0][0].shape == (3, 8, 8)  # repeated: the model expects three
    torch.testing.assert_close(r[0][0][0], g[0][0][0]) and torch.testing.assert_close(r[0][0][2], g[0][0][0])
    # exact values: a constant image c -> (c/255 - mean) / std
    c = load_dataset((np.full((2, 4, 4), 51, dtype=np.uint8), y), model=gray_net, image_size=4, mean=(0.5,),
                     std=(0.25,))
    torch.testing.assert_close(c[0][0], torch.full((1, 4, 4), (0.2 - 0.5) / 0.25))
