"""Structural selection of the trainable parameters of each fine-tuning method (docs/methods.md#finetuning).

A method resolves, through the model's structure, to an explicit list of parameter names, never by substring
matching:

- ``linear_probe``: the parameters of the classifier module (``model.nctransfer_info.classifier``);
- ``layer_ft``: those of one fine-tuning unit (:func:`nctransfer.features.discover_units`) + the classifier;
- ``scl_ft``: ``layer_ft`` + the skip branch attached by :func:`nctransfer.finetune.skip.attach_skip` (only the
  ``"conv"`` branch has parameters);
- ``full_ft``: every parameter.

Percentages are of *all* parameters of the model as trained (classifier and skip branch included), as in paper
000 table 3.
"""

from __future__ import annotations

import difflib
from typing import Any, Iterable, Sequence

import torch.nn as nn

from nctransfer.exceptions import InputValueError, NotFoundError
from nctransfer.features import discover_units
from nctransfer.finetune.config import canonical_method
from nctransfer.models.heads import find_classifier

SKIP_ATTR = "nctransfer_skip"
"""Attribute (and parameter-name prefix) under which the SCL skip branch is attached to a model."""


def classifier_path(model: Any) -> str:
    """Module path of the final classifier (its input is the penultimate feature).

    Delegates to :func:`nctransfer.models.heads.find_classifier`: ``model.nctransfer_info.classifier`` (set by
    :func:`nctransfer.models.load_model`), timm's ``pretrained_cfg["classifier"]``, else the last ``nn.Linear``.
    The SCL skip branch is never taken for the classifier.

    Raises:
        NotFoundError: no classifier could be identified.
    """
    path = find_classifier(model)
    if path.startswith(SKIP_ATTR):
        heads = [n for n, m in model.named_modules() if n and isinstance(m, nn.Linear) and not n.startswith(SKIP_ATTR)]
        if not heads:
            raise NotFoundError(f"could not find the classifier of {type(model).__name__}.")
        path = heads[-1]
    return path


def _has_module(model: Any, path: str) -> bool:
    try:
        model.get_submodule(path)
    except AttributeError:
        return False
    return True


def resolve_unit(model: Any, unit: Any) -> Any:
    """The fine-tuning unit of ``model`` named ``unit``.

    Args:
        model: a ``torch.nn.Module``.
        unit: a unit name or module path from :func:`nctransfer.features.discover_units`, or an integer index
            into that ordered list (negative counts from the end; 0 is the first unit, so the paper's 1-based
            "Block 5" of ResNet18 is index 4).

    Returns:
        the ``Unit`` (``name``, ``path``, ``module``, ``index``).

    Raises:
        InputValueError: the model has no discoverable units (the message says which architectures are supported).
        NotFoundError: unknown name or index out of range (the message lists the valid ones).
    """
    units = list_units(model)
    names = [u.name for u in units]
    if isinstance(unit, bool) or not isinstance(unit, (int, str)):
        raise InputValueError(f"unit must be a unit name or an integer index; got {unit!r}. Valid units: {names}.")
    if isinstance(unit, int):
        if -len(units) <= unit < len(units):
            return units[unit]
        raise NotFoundError(
            f"unit: index {unit} is out of range for {type(model).__name__}, which has {len(units)} fine-tuning "
            f"units (valid indices {-len(units)}..{len(units) - 1}): {names}."
        )
    key = unit.strip()
    for u in units:
        if key in (u.name, u.path):
            return u
    close = difflib.get_close_matches(key, names, n=3)
    hint = f" Did you mean {close}?" if close else ""
    raise NotFoundError(f"unit: unknown unit {unit!r} of {type(model).__name__}.{hint} Valid units: {names}.")


def list_units(model: Any) -> list[Any]:
    """The model's fine-tuning units (:func:`nctransfer.features.discover_units`), never empty.

    Raises:
        InputValueError: none found; the message says which architectures are supported.
    """
    try:
        units = list(discover_units(model))
    except (LookupError, ValueError) as exc:
        raise InputValueError(_unsupported_message(model, str(exc))) from exc
    if not units:
        raise InputValueError(_unsupported_message(model, ""))
    return units


def _unsupported_message(model: Any, detail: str) -> str:
    return (
        f"unit: no fine-tuning units found in {type(model).__name__}"
        + (f" ({detail})" if detail else "")
        + ". Layer FT and SCL FT need a model whose blocks nctransfer.features.discover_units recognises: "
        "ResNet-style residual blocks (torchvision/timm resnet*, layer1..layer4), timm blocks (EfficientNet, "
        "MobileNet, ConvNeXt stages), ViT encoder layers (timm VisionTransformer `blocks`, torchvision "
        "`encoder.layers`, HF `encoder.layer`) or a module with named children. linear_probe and full_ft work "
        "with any model that has a final classifier."
    )


def stage_first_units(units: Sequence[Any]) -> list[Any]:
    """The first unit of each stage (Li et al., TMLR 2024: ResNet18 blocks 1, 3, 5, 7 = ``layer1.0`` ... ``layer4.0``).

    A stage is the unit's parent path (``layer3.0`` -> ``layer3``; ``blocks.4.0`` -> ``blocks.4``). When every
    unit has the same parent (ViT ``blocks.7``, or stage-level units) each unit is its own stage: all are kept.
    """
    parents = [u.path.rsplit(".", 1)[0] if "." in u.path else "" for u in units]
    if len(set(parents)) <= 1:
        return list(units)
    out, seen = [], set()
    for u, parent in zip(units, parents):
        if parent not in seen:
            seen.add(parent)
            out.append(u)
    return out


def trainable_parameter_names(model: Any, method: str, unit: Any = None) -> list[str]:
    """Explicit, ordered list of the parameter names ``method`` trains.

    Args:
        model: the model (with the SCL skip branch already attached for ``scl_ft``).
        method: ``linear_probe``/``layer_ft``/``scl_ft``/``full_ft`` or the aliases ``lp``/``layer``/``scl``/``full``.
        unit: for ``layer_ft``/``scl_ft``, a unit name/index or a resolved ``Unit``.

    Returns:
        names in ``model.named_parameters()`` order.

    Raises:
        InputValueError: a unit is missing or has no parameters, or ``scl_ft`` without an attached skip branch.
    """
    method = canonical_method(method)
    all_names = [n for n, _ in model.named_parameters()]
    if method == "full_ft":
        if not all_names:
            raise InputValueError(f"model: {type(model).__name__} has no parameters to train.")
        return all_names
    selected: set[str] = set(_module_param_names(model, classifier_path(model)))
    if not selected:
        raise InputValueError(f"model: the classifier {classifier_path(model)!r} has no parameters to train.")
    if method in ("layer_ft", "scl_ft"):
        if unit is None:
            raise InputValueError(f"unit is required for {method}; valid units: {[u.name for u in list_units(model)]}.")
        u = unit if hasattr(unit, "path") and hasattr(unit, "module") else resolve_unit(model, unit)
        unit_names = _module_param_names(model, u.path)
        if not unit_names:
            raise InputValueError(f"unit: {u.name!r} has no parameters to fine-tune; choose another unit.")
        selected.update(unit_names)
    if method == "scl_ft":
        if not hasattr(model, SKIP_ATTR):
            raise InputValueError(
                "scl_ft: the skip branch is not attached; call nctransfer.finetune.attach_skip first."
            )
        selected.update(_module_param_names(model, SKIP_ATTR))
    return [n for n in all_names if n in selected]


def _module_param_names(model: Any, path: str) -> list[str]:
    mod = model.get_submodule(path)
    return [f"{path}.{n}" if path else n for n, _ in mod.named_parameters()]


def head_parameter_names(model: Any) -> list[str]:
    """Parameters trained at the head learning rate: the classifier and the skip branch (when attached)."""
    names = _module_param_names(model, classifier_path(model))
    if hasattr(model, SKIP_ATTR):
        names += _module_param_names(model, SKIP_ATTR)
    return names


def apply_trainable(model: Any, names: Iterable[str]) -> list[str]:
    """Set ``requires_grad`` to True exactly for ``names`` and False for every other parameter.

    Raises:
        NotFoundError: a name is not a parameter of the model.
    """
    names = list(names)
    params = dict(model.named_parameters())
    missing = [n for n in names if n not in params]
    if missing:
        raise NotFoundError(f"trainable: {missing[:5]} are not parameters of {type(model).__name__}.")
    keep = set(names)
    for n, p in params.items():
        p.requires_grad_(n in keep)
    return names


def count_parameters(model: Any, names: Iterable[str] | None = None) -> tuple[int, int]:
    """``(trainable, total)`` parameter counts (elements, shared tensors counted once).

    Args:
        names: parameter names counted as trainable; default: those with ``requires_grad``.
    """
    params = dict(model.named_parameters())
    total = sum(p.numel() for p in params.values())
    if names is None:
        trainable = sum(p.numel() for p in params.values() if p.requires_grad)
    else:
        keep = set(names)
        trainable = sum(p.numel() for n, p in params.items() if n in keep)
    return int(trainable), int(total)


def format_parameter_count(trainable: int, total: int) -> str:
    """``"trainable params: 5,130 || all params: 11,181,642 || trainable%: 0.0459"`` (peft's wording)."""
    pct = 100.0 * trainable / total if total else float("nan")
    return f"trainable params: {trainable:,d} || all params: {total:,d} || trainable%: {pct:.4f}"
