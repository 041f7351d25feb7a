"""Ordered discovery of a model's fine-tuning units (the blocks of docs/methods.md#finetuning and the taps of docs/methods.md#layer-wise).

Rules, tried in order (module registration order = forward order for these families):

1. **ResNet** (torchvision and timm): the children of ``layer1`` ... ``layer4`` (every residual block:
   ``layer1.0``, ``layer1.1``, ...). ResNet18 has 8 units, ResNet50 16.
2. **timm ``blocks``**: EfficientNet/MobileNet-style ``blocks.i.j`` when ``blocks.i`` are sequences of blocks,
   ViT-style ``blocks.i`` otherwise.
3. **``stages``** (timm ConvNeXt, RegNet, ...): ``stages.i.blocks.j`` (or the children of each stage).
4. **Transformer encoders**: ``encoder.stages.i.layers.j`` (HF ResNet/ConvNeXt), else the longest homogeneous
   sequence of blocks named ``layer``/``layers``/``blocks`` at any depth: Hugging Face ``vit.encoder.layer.i``
   (``vit.layers.i`` in transformers >= 5), torchvision ViT ``encoder.layers.encoder_layer_i``.
5. **torchvision ``features``** (EfficientNet, MobileNet, ConvNeXt, DenseNet...): ``features.i.j`` when
   ``features.i`` is a sequence of blocks, else ``features.i``.
6. **Generic fallback**: the top-level named children that have parameters, except the classifier.

The ``penultimate`` tap (the classifier's input) is added by :func:`nctransfer.features.list_taps`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch.nn as nn

from nctransfer.models.heads import find_classifier

PENULTIMATE = "penultimate"


@dataclass
class Unit:
    """One fine-tuning unit / tap.

    Attributes:
        name: tap name (the module path, or ``"penultimate"``).
        path: module path, ``model.get_submodule(path)`` gives :attr:`module`. For ``penultimate`` it is the
            classifier's path (its *input* is recorded).
        module: the ``nn.Module``.
        index: position in the ordered list of taps.
        kind: ``"output"`` (the module's output is recorded) or ``"input"`` (penultimate: the classifier's input).
        width: pooled feature width ``C`` (set by :func:`infer_widths` after a dry forward; ``None`` before).
        out_shape: raw output shape of the dry forward without the batch dimension (e.g. ``(64, 56, 56)``).
    """

    name: str
    path: str
    module: Any = field(repr=False)
    index: int
    kind: str = "output"
    width: int | None = None
    out_shape: tuple[int, ...] | None = None

    @property
    def is_penultimate(self) -> bool:
        return self.kind == "input"


def _is_seq(m: Any) -> bool:
    return isinstance(m, (nn.Sequential, nn.ModuleList))


def _has_params(m: Any) -> bool:
    return any(True for _ in m.parameters())


def _children_paths(module: Any, prefix: str) -> list[str]:
    return [f"{prefix}.{n}" for n, _ in module.named_children()]


def _block_paths(model: Any, classifier: str | None) -> list[str]:
    names = dict(model.named_modules())
    # 1. ResNet
    layers = [f"layer{i}" for i in range(1, 8) if f"layer{i}" in names and _is_seq(names[f"layer{i}"])]
    if len(layers) >= 2:
        return [p for layer in layers for p in _children_paths(names[layer], layer)]
    # 2. timm blocks
    for root in ("blocks",):
        if root in names and _is_seq(names[root]) and len(names[root]) > 0:
            kids = list(names[root].named_children())
            if all(_is_seq(m) for _, m in kids):
                return [f"{root}.{i}.{j}" for i, m in kids for j, _ in m.named_children()]
            return [f"{root}.{i}" for i, _ in kids]
    # 3. stages
    if "stages" in names and _is_seq(names["stages"]):
        out: list[str] = []
        for i, stage in names["stages"].named_children():
            if hasattr(stage, "blocks") and _is_seq(stage.blocks):
                out += _children_paths(stage.blocks, f"stages.{i}.blocks")
            elif _is_seq(stage):
                out += _children_paths(stage, f"stages.{i}")
            else:
                out.append(f"stages.{i}")
        if out:
            return out
    # 4. transformer encoders at any depth: HF ``encoder.stages.i.layers.j`` first, then the longest homogeneous
    #    sequence named layer/layers/blocks (HF ``vit.encoder.layer``, transformers>=5 ``vit.layers``, torchvision
    #    ``encoder.layers``)
    for path, m in names.items():
        if path.endswith("encoder.stages") and _is_seq(m):
            out = []
            for i, stage in m.named_children():
                inner = getattr(stage, "layers", None)
                out += _children_paths(inner, f"{path}.{i}.layers") if _is_seq(inner) else [f"{path}.{i}"]
            if out:
                return out
    best: tuple[int, str] | None = None
    for path, m in names.items():
        leaf = path.rsplit(".", 1)[-1]
        if leaf not in ("layer", "layers", "blocks") or not _is_seq(m) or len(m) < 1:
            continue
        kids = [c for _, c in m.named_children()]
        if len({type(c) for c in kids}) == 1 and all(any(True for _ in c.children()) for c in kids):
            if best is None or len(kids) > best[0]:
                best = (len(kids), path)
    if best is not None:
        return _children_paths(names[best[1]], best[1])
    # 5. torchvision features
    if "features" in names and _is_seq(names["features"]):
        out = []
        for i, m in names["features"].named_children():
            if not _has_params(m):
                continue
            kids = [c for _, c in m.named_children()]
            if _is_seq(m) and kids and all(any(True for _ in c.children()) for c in kids):
                out += _children_paths(m, f"features.{i}")
            else:
                out.append(f"features.{i}")
        if out:
            return out
    # 6. generic
    top = classifier.split(".")[0] if classifier else None
    return [n for n, m in model.named_children() if _has_params(m) and n != top and n != classifier]


def discover_units(model: Any, include_penultimate: bool = False) -> list[Unit]:
    """Ordered fine-tuning units of ``model`` (see module docstring for the rules).

    Args:
        model: an ``nn.Module`` (ideally from :func:`nctransfer.models.load_model`).
        include_penultimate: append the ``penultimate`` tap (classifier input) as the last unit.

    Returns:
        list of :class:`Unit` with ``index`` 0, 1, ...

    Examples:
        >>> units = discover_units(torchvision.models.resnet18())  # doctest: +SKIP
        >>> [u.name for u in units][:3]  # doctest: +SKIP
        ['layer1.0', 'layer1.1', 'layer2.0']
    """
    try:
        classifier: str | None = find_classifier(model)
    except LookupError:
        classifier = None
    paths = _block_paths(model, classifier)
    units = [Unit(name=p, path=p, module=model.get_submodule(p), index=i) for i, p in enumerate(paths)]
    if include_penultimate and classifier is not None:
        units.append(Unit(name=PENULTIMATE, path=classifier, module=model.get_submodule(classifier),
                          index=len(units), kind="input"))
    return units
