"""``timm:<name>[.<tag>]``: ``timm.create_model`` with weights from the Hugging Face hub (or its local cache), and
the :class:`~nctransfer.models.info.ModelInfo` read from a timm model's ``pretrained_cfg``."""

from __future__ import annotations

from typing import Any

import timm

from nctransfer.models.errors import suggest, unknown_name, weights_error
from nctransfer.models.heads import find_classifier, in_width
from nctransfer.models.info import IMAGENET_MEAN, IMAGENET_STD, ModelInfo


def timm_info(model: Any, name: str, source: str, pretrained: bool, **overrides: Any) -> ModelInfo:
    """:class:`ModelInfo` from a timm model's ``pretrained_cfg``."""
    cfg = dict(getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None) or {})
    classifier = find_classifier(model)
    head = model.get_submodule(classifier)
    nf = in_width(head) or int(getattr(model, "head_hidden_size", 0) or getattr(model, "num_features", 0))
    info = ModelInfo(
        name=name,
        source=source,
        pretrained=pretrained,
        input_size=tuple(int(v) for v in cfg.get("input_size", (3, 224, 224))),
        mean=tuple(float(v) for v in cfg.get("mean", IMAGENET_MEAN)),
        std=tuple(float(v) for v in cfg.get("std", IMAGENET_STD)),
        interpolation=str(cfg.get("interpolation", "bicubic")),
        crop_pct=float(cfg.get("crop_pct", 0.875)),
        classifier=classifier,
        num_features=nf,
        num_classes=int(getattr(model, "num_classes", 0) or 0),
        arch=f"timm:{cfg.get('architecture', type(model).__name__)}",
        weights=(f"timm:{cfg.get('architecture', '')}.{cfg.get('tag', '')}" if pretrained else "random-init"),
    )
    return info.replace(**overrides) if overrides else info


def load_timm(name: str, pretrained: bool, **kwargs: Any) -> Any:
    """``timm.create_model(name, pretrained=pretrained, **kwargs)`` with its ModelInfo attached."""
    base = name.split(".")[0]
    if not timm.is_model(base):
        raise unknown_name("timm model", name, [f"timm:{n}" for n in suggest(base, timm.list_models())],
                       "See timm.list_models() or nctransfer.models.list_models('timm', '*pattern*').")
    try:
        model = timm.create_model(name, pretrained=pretrained, **kwargs)
    except OSError as exc:  # no network and no cache (URLError, LocalEntryNotFoundError, ...)
        if not pretrained:
            raise
        raise weights_error(f"timm:{name}", exc) from exc
    except RuntimeError as exc:
        if pretrained and ("pretrained" in str(exc).lower() or "weights" in str(exc).lower()):
            raise weights_error(f"timm:{name}", exc) from exc
        raise
    model.nctransfer_info = timm_info(model, f"timm:{name}", "timm", pretrained)
    return model

