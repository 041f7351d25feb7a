"""``hf:<repo id>``: a ``transformers`` image classifier (optional extra ``[hf]``), wrapped so that ``model(x)``
returns the logits, with the preprocessing of its image processor."""

from __future__ import annotations

from typing import Any

import torch.nn as nn

from nctransfer.exceptions import NotFoundError
from nctransfer.models.errors import offline_help, weights_error
from nctransfer.models.heads import find_classifier, in_width
from nctransfer.models.info import IMAGENET_MEAN, IMAGENET_STD, ModelInfo


class HFImageClassifier(nn.Module):
    """Wraps a ``transformers`` image classifier so that ``model(x)`` returns the logits tensor.
    The wrapped model is ``.model`` (module paths start with ``model.``)."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Any) -> Any:
        return self.model(pixel_values=x).logits


def wrap_hf_model(hf_model: Any, name: str = "hf:model", image_processor: Any = None,
                  pretrained: bool = True) -> Any:
    """Wrap a ``transformers`` ``*ForImageClassification`` model (logits out) and attach its ModelInfo."""
    wrapped = HFImageClassifier(hf_model)
    mean, std, size, crop_pct, interp = IMAGENET_MEAN, IMAGENET_STD, 224, 1.0, "bilinear"
    p = image_processor
    if p is not None:
        mean = tuple(float(v) for v in getattr(p, "image_mean", None) or mean)
        std = tuple(float(v) for v in getattr(p, "image_std", None) or std)
        s = getattr(p, "crop_size", None) or getattr(p, "size", None) or {}
        if isinstance(s, dict):
            size = int(s.get("height") or s.get("shortest_edge") or size)
        elif isinstance(s, int):
            size = s
        crop_pct = float(getattr(p, "crop_pct", None) or 1.0)
        interp = {0: "nearest", 2: "bilinear", 3: "bicubic", 1: "lanczos"}.get(int(getattr(p, "resample", 2) or 2),
                                                                            "bilinear")
    else:
        cfg_size = getattr(getattr(hf_model, "config", None), "image_size", None)
        if isinstance(cfg_size, int):
            size = cfg_size
    classifier = "model." + find_classifier(hf_model)
    head = wrapped.get_submodule(classifier)
    wrapped.image_processor = image_processor  # the model's own preprocessing (nctransfer.data.eval_transform)
    wrapped.nctransfer_info = ModelInfo(
        name=name, source="hf", pretrained=pretrained, input_size=(3, size, size), mean=mean, std=std,
        interpolation=interp, crop_pct=crop_pct, classifier=classifier, num_features=in_width(head),
        num_classes=int(getattr(head, "out_features", 0)), arch=name, weights=name if pretrained else "random-init",
    )
    return wrapped


def load_hf(repo: str, pretrained: bool, **kwargs: Any) -> Any:
    """``AutoModelForImageClassification`` of ``repo`` (pre-trained, or from its config) wrapped by
    :func:`wrap_hf_model` with ``AutoImageProcessor``'s preprocessing."""
    try:
        import transformers  # deferred: the optional [hf] extra, needed only for 'hf:' names
    except ImportError as exc:
        raise ImportError(
            f"loading 'hf:{repo}' needs the optional dependency transformers: pip install 'nctransfer[hf]' "
            "(or pip install transformers)."
        ) from exc
    try:
        processor = None
        try:
            processor = transformers.AutoImageProcessor.from_pretrained(repo)
        except (OSError, ValueError):
            processor = None
        if pretrained:
            hf = transformers.AutoModelForImageClassification.from_pretrained(repo, **kwargs)
        else:
            config = transformers.AutoConfig.from_pretrained(repo)
            hf = transformers.AutoModelForImageClassification.from_config(config, **kwargs)
    except OSError as exc:
        if "is not a local folder and is not a valid model identifier" in str(exc) and pretrained is not None:
            raise NotFoundError(f"unknown Hugging Face model 'hf:{repo}' (or no network): {exc}. "
                                + offline_help(f"hf:{repo}")) from exc
        raise weights_error(f"hf:{repo}", exc) from exc
    return wrap_hf_model(hf, f"hf:{repo}", processor, pretrained)

