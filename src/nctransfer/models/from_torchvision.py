"""``torchvision:<name>`` (alias ``tv:``): ``torchvision.models.get_model`` with the ``DEFAULT`` weights, and the
preprocessing those weights state (``weights.transforms()``)."""

from __future__ import annotations

from typing import Any

import torchvision.models as tvm

from nctransfer.models.errors import WeightsUnavailableError, suggest, unknown_name, weights_error
from nctransfer.models.heads import find_classifier, in_width
from nctransfer.models.info import IMAGENET_MEAN, IMAGENET_STD, ModelInfo

TV_INTERP = {"InterpolationMode.BILINEAR": "bilinear", "InterpolationMode.BICUBIC": "bicubic",
              "InterpolationMode.NEAREST": "nearest"}


def torchvision_names() -> list[str]:
    """The classification models of ``torchvision.models``."""
    return list(tvm.list_models(module=tvm))


def load_torchvision(name: str, pretrained: bool, **kwargs: Any) -> Any:
    """``torchvision.models.get_model(name)`` with its ``DEFAULT`` weights (or none) and its ModelInfo attached."""
    names = torchvision_names()
    if name not in names:
        raise unknown_name("torchvision model", name, [f"torchvision:{n}" for n in suggest(name, names)],
                       "See torchvision.models.list_models().")
    try:
        weights_enum = tvm.get_model_weights(name)
        default = weights_enum.DEFAULT
    except (ValueError, AttributeError, KeyError):
        default = None
    if pretrained and default is None:
        raise WeightsUnavailableError(f"torchvision:{name} has no pre-trained weights; use pretrained=False.")
    try:
        model = tvm.get_model(name, weights=default if pretrained else None, **kwargs)
    except OSError as exc:
        raise weights_error(f"torchvision:{name}", exc) from exc
    input_size, mean, std, interp, crop_pct = (3, 224, 224), IMAGENET_MEAN, IMAGENET_STD, "bilinear", 0.875
    if default is not None:
        try:
            t = default.transforms()
            crop = int(t.crop_size[0])
            resize = int(t.resize_size[0])
            input_size, crop_pct = (3, crop, crop), crop / resize
            mean, std = tuple(float(v) for v in t.mean), tuple(float(v) for v in t.std)
            interp = str(getattr(t.interpolation, "value", t.interpolation)).lower()
            interp = TV_INTERP.get(interp, interp)
        except Exception:  # noqa: BLE001 - metadata only; keep ImageNet defaults
            pass
    num_classes = int(kwargs.get("num_classes", 1000))
    classifier = find_classifier(model, num_classes)
    model.nctransfer_info = ModelInfo(
        name=f"torchvision:{name}", source="torchvision", pretrained=pretrained, input_size=input_size,
        mean=mean, std=std, interpolation=interp, crop_pct=crop_pct, classifier=classifier,
        num_features=in_width(model.get_submodule(classifier)), num_classes=num_classes,
        arch=f"torchvision:{name}", weights=(str(default) if pretrained else "random-init"),
    )
    return model

