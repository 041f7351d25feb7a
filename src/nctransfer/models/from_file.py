"""``file:<path>[?arch=<name>]``: a saved model file. A state dict (``torch.save(model.state_dict())``, a
checkpoint dict holding one, ``.safetensors``, or a file written by :func:`save_model`) is loaded into the
architecture ``arch`` names; a whole pickled module (``torch.save(model)``) only with ``allow_pickle`` (unpickling
can run arbitrary code). :func:`save_model` writes a state dict with its ModelInfo atomically."""

from __future__ import annotations

import os
import pickle
import warnings
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs

import torch
import torch.nn as nn
from safetensors.torch import load_file as load_safetensors

from nctransfer.exceptions import InputValueError, NotFoundError, UnsafeFileError
from nctransfer.models.from_timm import timm_info
from nctransfer.models.heads import find_classifier, in_width
from nctransfer.models.info import ModelInfo
from nctransfer.models.state_dict import load_state_dict_flexible
from nctransfer.utils.io import atomic_path, file_sha256
from nctransfer.utils.torch_io import first_sentence


def unwrap_state_dict(obj: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """``(state_dict, info_dict)`` from a plain state dict or a checkpoint dict."""
    info = obj.get("nctransfer_info") if isinstance(obj.get("nctransfer_info"), dict) else None
    for key in ("state_dict", "model_state_dict", "model", "module", "net", "weights"):
        inner = obj.get(key)
        if isinstance(inner, dict) and inner and all(torch.is_tensor(v) for v in inner.values()):
            obj = inner
            break
    sd = {k: v for k, v in obj.items() if torch.is_tensor(v)}
    if not sd:
        raise InputValueError("the file holds a dict with no tensors; expected a state dict or a checkpoint with "
                              "a 'state_dict' entry.")
    if all(k.startswith("module.") for k in sd):  # saved from DataParallel / DDP
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd, info


def load_file(spec: str, build: Callable[..., Any], arch: str | None = None, allow_pickle: bool = False,
              **kwargs: Any) -> Any:
    """The model in the file ``spec`` (``<path>[?arch=<name>]``) with its ModelInfo attached.

    Args:
        spec: the path, optionally with ``?arch=<name>``.
        build: builds the architecture of a state dict: ``build(arch, pretrained=False, num_classes=None,
            **kwargs)`` (:func:`~nctransfer.models.load_model`).
        arch: the architecture of a state dict (same as ``?arch=``); default: the one saved in the file.
        allow_pickle: also load a whole pickled module (see :func:`~nctransfer.models.load_model`).
    """
    path_str, _, query = spec.partition("?")
    params = {k: v[-1] for k, v in parse_qs(query).items()} if query else {}
    unknown = sorted(set(params) - {"arch"})
    if unknown:
        raise InputValueError(f"file: model spec {spec!r}: unknown option(s) {unknown}; only '?arch=<name>' is "
                              "accepted.")
    arch = arch or params.get("arch")
    path = Path(path_str).expanduser()
    if path.is_dir():
        raise InputValueError(f"file: model {str(path)!r} is a directory; expected a weights file (.pt, .pth, "
                              ".safetensors).")
    if not path.is_file():
        raise NotFoundError(f"file: model {str(path)!r} does not exist.")
    name = f"file:{path}"
    if path.suffix == ".safetensors":
        obj: Any = load_safetensors(str(path))
    else:
        obj = torch_load_checked(path, name, allow_pickle)
    digest = file_sha256(path)[:16]
    if isinstance(obj, nn.Module):
        model = obj
        old = getattr(model, "nctransfer_info", None)
        if isinstance(old, ModelInfo):
            info = old.replace(name=name, source="file", weights=f"{path}#sha256:{digest}",
                               extra={**old.extra, "loaded_from": str(path)})
        elif hasattr(model, "pretrained_cfg"):
            info = timm_info(model, name, "file", True, weights=f"{path}#sha256:{digest}")
        else:
            classifier = find_classifier(model)
            info = ModelInfo(name=name, source="file", pretrained=True, classifier=classifier,
                             num_features=in_width(model.get_submodule(classifier)),
                             arch=type(model).__name__, weights=f"{path}#sha256:{digest}")
            warnings.warn(f"{name}: no preprocessing metadata in the file; assuming ImageNet mean/std at 224 px. "
                          "Set model.nctransfer_info to override.", stacklevel=3)
        model.nctransfer_info = info
        return model
    if not isinstance(obj, dict):
        raise InputValueError(f"{name}: expected a saved nn.Module or a state dict; the file holds "
                              f"{type(obj).__name__}.")
    sd, saved_info = unwrap_state_dict(obj)
    if arch is None and isinstance(obj.get("arch"), str):
        arch = obj["arch"]
    if arch is None:
        raise InputValueError(
            f"{name} holds a state dict; give the architecture it belongs to, e.g. "
            f"'file:{path}?arch=timm:resnet18' or load_model('file:{path}', arch='timm:resnet18')."
        )
    model = build(arch, pretrained=False, **kwargs)
    base_info = model.nctransfer_info
    head_w = sd.get(f"{base_info.classifier}.weight")
    if head_w is not None and head_w.ndim >= 1 and int(head_w.shape[0]) != base_info.num_classes:
        model = build(arch, pretrained=False, num_classes=int(head_w.shape[0]), **kwargs)
        base_info = model.nctransfer_info
    how = load_state_dict_flexible(model, sd, what=name)
    info = base_info
    if saved_info is not None:
        try:
            info = ModelInfo.from_dict(saved_info)
        except TypeError:
            info = base_info
    model.nctransfer_info = info.replace(
        name=name, source="file", pretrained=True, arch=base_info.arch or arch,
        weights=f"{path}#sha256:{digest}", extra={**info.extra, "state_dict_mapping": how, "arch_name": arch},
    )
    return model


def torch_load_checked(path: Path, name: str, allow_pickle: bool) -> Any:
    """``torch.load`` with ``weights_only=True``; the unrestricted unpickler only when the caller opted in.

    Raises:
        UnsafeFileError: the file needs full unpickling (e.g. a whole pickled module) and ``allow_pickle`` is False.
        InputValueError: the file is not a readable torch file (truncated, corrupt, another format).
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if not allow_pickle:
            raise UnsafeFileError(
                f"{name} needs full unpickling (it holds pickled Python objects, e.g. a whole torch.save(model) "
                "module), and unpickling a file can run arbitrary code. Pass allow_pickle=True (CLI: "
                "--allow-pickle) only if you trust the file, or re-save it as a state dict "
                "(nctransfer.models.save_model(model, path)) or .safetensors.") from None
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "weights_only" not in str(exc):
            raise InputValueError(f"{name} could not be read with torch.load: {first}") from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:  # truncated zip, not a torch file
        first = first_sentence(exc)
        raise InputValueError(f"{name} is not a readable torch file (truncated or corrupt?): {first}") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=False)  # noqa: S614 - explicit opt-in
    except Exception as exc:  # noqa: BLE001 - any failure of a trusted file is reported in one line
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputValueError(f"{name} could not be loaded even with allow_pickle=True: {first}") from None


def save_model(model: Any, path: str | os.PathLike) -> Path:
    """Save ``model``'s state dict with its ModelInfo (atomic write), loadable with ``load_model('file:<path>')``
    without giving the architecture again (it is read from the saved info)."""
    info = getattr(model, "nctransfer_info", None)
    payload: dict[str, Any] = {"state_dict": model.state_dict()}
    if info is not None:
        payload["nctransfer_info"] = info.to_dict()
        arch = info.name if info.source == "bundled" else info.arch
        if info.source == "file":
            arch = info.extra.get("arch_name")
        if arch:
            payload["arch"] = arch
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path
