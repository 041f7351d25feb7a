"""Finding and replacing a model's final classifier, whatever library built it."""

from __future__ import annotations

from typing import Any

import torch.nn as nn

from nctransfer.exceptions import InputValueError, NotFoundError


def _is_head(module: Any) -> bool:
    return isinstance(module, (nn.Linear, nn.Conv2d, nn.LazyLinear))


def find_classifier(model: Any, num_classes: int | None = None) -> str:
    """Module path of ``model``'s final classifier.

    Order of preference: ``model.nctransfer_info.classifier``; timm's ``pretrained_cfg["classifier"]`` (or
    ``default_cfg``); the last ``nn.Linear`` (or ``nn.Conv2d`` with ``num_classes`` outputs, as in SqueezeNet) in
    registration order. ``""`` would denote the model itself and is never returned.

    Raises:
        NotFoundError: no candidate module exists.
    """
    info = getattr(model, "nctransfer_info", None)
    names = dict(model.named_modules())
    if info is not None and getattr(info, "classifier", "") in names and info.classifier:
        return info.classifier
    cfg = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None) or {}
    path = cfg.get("classifier") if isinstance(cfg, dict) else None
    if isinstance(path, (list, tuple)):
        path = path[0] if path else None
    if path and path in names:
        return path
    heads = [name for name, module in model.named_modules() if name and _is_head(module)]
    if not heads:
        raise NotFoundError(
            f"could not find the classifier of {type(model).__name__}: it has no nn.Linear layer. "
            "Set model.nctransfer_info.classifier (a module path) or load it through nctransfer.models.load_model."
        )
    if num_classes is not None:
        matching = [n for n in heads if _out_width(names[n]) == num_classes]
        if matching:
            return matching[-1]
    return heads[-1]


def _out_width(module: Any) -> int:
    if hasattr(module, "out_features"):
        return int(module.out_features)
    if hasattr(module, "out_channels"):
        return int(module.out_channels)
    return 0


def in_width(module: Any) -> int:
    """Input width of a classifier module (``in_features`` / ``in_channels``; 0 if unknown)."""
    if hasattr(module, "in_features"):
        return int(module.in_features)
    if hasattr(module, "in_channels"):
        return int(module.in_channels)
    return 0


def set_submodule(model: Any, path: str, new: Any) -> None:
    """Replace the sub-module at dotted ``path`` by ``new``."""
    parent_path, _, leaf = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    if isinstance(parent, (list, tuple)) or leaf.isdigit():
        parent[int(leaf)] = new
    else:
        setattr(parent, leaf, new)


def reset_classifier(model: Any, num_classes: int, path: str | None = None) -> str:
    """Give ``model`` a freshly initialised classifier with ``num_classes`` outputs (0 removes it:
    ``nn.Identity``). Uses timm's ``reset_classifier`` when available, else replaces the module at ``path``
    (``nn.Linear`` -> ``nn.Linear``, ``nn.Conv2d`` -> ``nn.Conv2d`` 1x1). Returns the classifier path.
    """
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 0:
        raise InputValueError(f"num_classes must be a non-negative integer; got {num_classes!r}.")
    if path is None:
        path = find_classifier(model)
    if hasattr(model, "reset_classifier") and hasattr(model, "pretrained_cfg"):
        model.reset_classifier(num_classes)
        return path
    old = model.get_submodule(path)
    width = in_width(old)
    if num_classes == 0:
        new: Any = nn.Identity()
    elif isinstance(old, nn.Conv2d):
        new = nn.Conv2d(width, num_classes, kernel_size=1)
    elif isinstance(old, nn.Linear):
        new = nn.Linear(width, num_classes, bias=old.bias is not None)
    else:
        raise InputValueError(
            f"cannot reset the classifier {path!r} of type {type(old).__name__}; expected nn.Linear or nn.Conv2d."
        )
    try:
        p = next(old.parameters())
        new = new.to(device=p.device, dtype=p.dtype)
    except StopIteration:
        pass
    set_submodule(model, path, new)
    return path
