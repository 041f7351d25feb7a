"""The sources :func:`~nctransfer.data.load_dataset` reads, one loader each: the built-in Fashion-MNIST and digits,
``torchvision:<Name>``, ``hf:<name>`` (the Hugging Face hub), explicit ``train=``/``test=``/``val=`` splits (or a
Hugging Face ``DatasetDict``), and the user's own dataset objects (:mod:`nctransfer.data.inputs`). Image folders:
:mod:`nctransfer.data.folders`."""

from __future__ import annotations

import difflib
import inspect
import os
from pathlib import Path
from typing import Any

import numpy as np
import torchvision.datasets as tvd
from torch.utils.data import ConcatDataset

from nctransfer.data import inputs as I
from nctransfer.data.arrays import FASHION_MNIST_CLASSES, load_digits_arrays, load_fashion_mnist_arrays
from nctransfer.data.image_datasets import ArrayImageDataset, WrappedImageDataset, images_to_nchw
from nctransfer.data.splits import canonical_split, split_positions
from nctransfer.exceptions import InputValueError, NotFoundError

BUILTIN = {"fashion-mnist": "fashion-mnist", "fashion_mnist": "fashion-mnist", "fmnist": "fashion-mnist",
           "fashionmnist": "fashion-mnist", "digits": "digits", "sklearn-digits": "digits"}
TORCHVISION_ROOT = "~/.cache/nctransfer/torchvision"


def fashion_mnist_split(split: str, root: Any, **kw: Any) -> tuple[Any, np.ndarray, list[str], dict[str, Any]]:
    """``(X [N, 28, 28] uint8, y [N], class names, {})`` of Fashion-MNIST's ``split`` (``kw``: the fractions and
    seed of :func:`~nctransfer.data.splits.split_positions`; ``test`` is the official test set)."""
    if split == "test":
        X, y = load_fashion_mnist_arrays("test", root)
        return X, y, FASHION_MNIST_CLASSES, {}
    if split == "all":
        raise InputValueError("fashion-mnist has an official train/test split; use split='train', 'val', 'test' or "
                              "'trainval'.")
    X, y = load_fashion_mnist_arrays("train", root)
    pos = split_positions(y, split, has_official=True, **kw)
    return X[pos], y[pos], FASHION_MNIST_CLASSES, {}


def digits_split(split: str, **kw: Any) -> tuple[Any, np.ndarray, list[str], dict[str, Any]]:
    """``(X [N, 8, 8] float32 in [0, 1], y [N], class names, {})`` of scikit-learn's digits, ``split`` carved by
    :func:`~nctransfer.data.splits.split_positions`."""
    X, y = load_digits_arrays()
    pos = split_positions(y, split, has_official=False, **kw)
    return (X[pos] / 16.0).astype(np.float32), y[pos], [str(i) for i in range(10)], {}


def torchvision_dataset(name: str, split: str, transform: Any, root: Any, download: bool, **kw: Any) -> Any:
    """``torchvision.datasets.<name>`` under ``root``: an :class:`ArrayImageDataset` when it holds its images in
    ``.data`` (MNIST, CIFAR), else a :class:`WrappedImageDataset`; its official test split when it has one."""
    available = [n for n in dir(tvd) if not n.startswith("_") and inspect.isclass(getattr(tvd, n))]
    if name not in available:
        close = difflib.get_close_matches(name, available, n=5, cutoff=0.5)
        raise NotFoundError(f"unknown torchvision dataset {name!r}." + (f" Did you mean: {', '.join(close)}?" if close
                                                                          else "") + " See torchvision.datasets.")
    cls = getattr(tvd, name)
    root = Path(root or TORCHVISION_ROOT).expanduser()
    params = inspect.signature(cls).parameters

    def build(official: str) -> Any:
        kwargs: dict[str, Any] = {}
        if "download" in params:
            kwargs["download"] = download
        if "train" in params:
            kwargs["train"] = official == "train"
        elif "split" in params:
            kwargs["split"] = official
        try:
            return cls(str(root), **kwargs)
        except (RuntimeError, FileNotFoundError, OSError) as exc:
            hint = "" if download else (" Pass download=True (CLI: --download) to download it, or point root= at a "
                                        "directory holding it.")
            raise NotFoundError(f"torchvision dataset {name} (split {official!r}) is not available under {root}: "
                                f"{exc}.{hint}") from exc

    has_official = "train" in params or "split" in params
    official = "test" if split == "test" and has_official else "train"
    base = build(official)
    targets = getattr(base, "targets", None)
    if targets is None:
        targets = getattr(base, "labels", None)
    if targets is None:
        targets = [int(base[i][1]) for i in range(len(base))]
    targets = np.asarray(targets, dtype=np.int64)
    classes = list(getattr(base, "classes", None) or [str(i) for i in range(int(targets.max()) + 1)])
    if split == "test" and has_official:
        pos = np.arange(len(targets))
    else:
        pos = split_positions(targets, split, has_official=has_official, **kw)
    meta = {"split": split, "root": str(root)}
    data = getattr(base, "data", None)
    if data is not None and hasattr(data, "shape") and len(data) == len(targets) and np.asarray(data[:1]).ndim in (3, 4):
        images = images_to_nchw(data[pos], f"{name}.data")
        return ArrayImageDataset(images, targets[pos], classes, transform, name=f"torchvision:{name}", meta=meta)
    return WrappedImageDataset(base, pos, targets, classes, transform, name=f"torchvision:{name}", meta=meta)


def is_hf_dict(spec: Any) -> bool:
    """A Hugging Face ``DatasetDict`` (or ``IterableDatasetDict``): explicit splits by name."""
    return type(spec).__name__ in ("DatasetDict", "IterableDatasetDict") and (type(spec).__module__ or "").startswith(
        "datasets.")


def hf_hub_dataset(name: str, root: Any) -> Any:
    """``hf:<name>`` (or ``hf:<name>:<config>``): ``datasets.load_dataset`` from the Hugging Face hub (online, or
    its local cache)."""
    try:
        import datasets  # deferred: the optional [hf] extra, needed only for 'hf:<name>'
    except ImportError as exc:
        raise ImportError(f"'hf:{name}' needs the optional dependency datasets: pip install 'nctransfer[hf]' (or pip "
                          "install datasets).") from exc
    repo, _, config = name.partition(":")
    if not repo:
        raise InputValueError("load_dataset: nothing after 'hf:'; expected e.g. 'hf:cifar10' or 'hf:user/name'.")
    try:
        return datasets.load_dataset(repo, config or None, cache_dir=None if root is None else str(root))
    except (FileNotFoundError, ValueError, OSError, ConnectionError) as exc:
        raise NotFoundError(f"Hugging Face dataset {repo!r} could not be loaded ({type(exc).__name__}: "
                            f"{str(exc)[:300]}). 'hf:<name>' needs network access or a copy in the local Hugging "
                            "Face cache ($HF_HOME); offline, build a datasets.Dataset yourself and pass it "
                            "directly.") from exc


_SPLIT_KEYS = {"train": ("train",), "test": ("test",), "val": ("val", "valid", "validation")}


def explicit_part(spec: Any, split: str | None) -> tuple[Any, str | None]:
    """The part of explicit splits (``{"train": ..., "test": ..., "val": ...}`` or a HF ``DatasetDict``) that
    ``split`` asks for, and the split to apply inside it (``None``: used as given)."""
    keys = {str(k).lower(): k for k in spec.keys()}
    s = canonical_split(split) if split is not None else "train"

    def get(name: str) -> Any:
        k = next((keys[c] for c in _SPLIT_KEYS[name] if c in keys), None)
        return None if k is None else spec[k]

    train, test, val = get("train"), get("test"), get("val")
    unknown = sorted(k for k in keys if not any(k in v for v in _SPLIT_KEYS.values()))
    if unknown and not is_hf_dict(spec):
        raise InputValueError(f"explicit splits: unknown key(s) {unknown}; expected train, test and optionally val.")
    hf_carve = is_hf_dict(spec) and test is None and train is not None
    if hf_carve:  # a hub dataset with a training split only: carve test/val from it (seeded, stratified)
        return train, s
    if s == "all":
        raise InputValueError("explicit splits (train=/test=/val=) are used as given; ask for split='train', 'test', "
                              "'val' or 'trainval'.")
    if s == "trainval" and val is not None:
        if train is None:
            raise InputValueError("split='trainval' needs train=.")
        if is_hf_dict(spec) or type(train).__module__.startswith("datasets."):
            import datasets  # deferred: the optional [hf] extra (the parts are Hugging Face datasets)

            return datasets.concatenate_datasets([train, val]), None
        return ConcatDataset([train, val]), None
    part = {"train": train, "trainval": train, "test": test, "val": val}[s]
    if part is None:
        have = ", ".join(k for k, v in (("train", train), ("test", test), ("val", val)) if v is not None)
        raise InputValueError(f"split={s!r}: no {'val' if s == 'val' else s} dataset was given (explicit splits: "
                              f"{have or 'none'}); pass {'val' if s == 'val' else s}= as well.")
    if isinstance(part, (str, os.PathLike)):  # a name or folder given as one split: all of a flat folder
        p = Path(str(part)).expanduser()
        if p.is_dir():
            subs = {c.name.lower() for c in p.iterdir() if c.is_dir()}
            return str(part), (s if {"train", "test"} <= subs else "all")
        return str(part), s
    return part, None


def user_dataset(spec: Any, split: str | None, split_c: str, kw: dict[str, Any], *, classes: Any,
                 image_column: str | None, label_column: str | None, dataset_id: str | None) -> Any:
    """The user's own dataset object (map-style Dataset, DataLoader, HF dataset, stream): see
    :mod:`nctransfer.data.inputs`."""
    if I.is_stream(spec):
        if dataset_id is None:
            raise I.stream_error(spec)
        spec = I.stream_loader(spec)
    if I.is_dataloader(spec):
        if split is not None and split_c != "all":
            raise InputValueError(f"load_dataset: a DataLoader is used as given and cannot be split (split={split!r}); "
                                  "pass explicit train= and test= loaders (rank_models(..., train=..., test=...)).")
        return I.LoaderDataset(spec, classes=classes, dataset_id=dataset_id, image_column=image_column,
                               label_column=label_column, meta={"split": "given"})
    hashes: dict[Any, str] = {}
    if I.is_hf_dataset(spec):
        base: Any = I.HFImageSource(spec, image_column, label_column)
        info_name = getattr(getattr(spec, "info", None), "dataset_name", None)
        name = f"hf:{info_name or 'Dataset'}"
        raw = base.raw_labels()
        names = classes if classes is not None else base.names
    elif I.is_map_dataset(spec) and not isinstance(spec, (tuple, list)):
        base = spec
        name = type(spec).__name__
        if len(spec) == 0:
            raise InputValueError(f"load_dataset: the dataset {name} is empty.")
        raw = None
        for attr in ("targets", "labels"):
            t = getattr(spec, attr, None)
            if t is not None and not callable(t):
                arr = t.detach().cpu().numpy() if hasattr(t, "detach") else np.asarray(t)
                if arr.ndim == 1 and len(arr) == len(spec):
                    raw = arr
                    break
        if raw is None:
            raw = I.read_labels(spec, name, hashes)
        names = classes if classes is not None else getattr(spec, "classes", None)
        if names is not None:
            names = [str(c) for c in names]
    else:
        raise InputValueError(
            "load_dataset: spec must be a dataset name ('fashion-mnist', 'digits'), a directory, "
            "'torchvision:<Name>', 'hf:<name>', (X, y) arrays, a torch Dataset yielding (image, label), a DataLoader, "
            f"a Hugging Face datasets.Dataset, or explicit train=/test=; got {type(spec).__name__}.")
    codes, names = I.encode_labels(raw, names, name)
    pos = split_positions(codes, split_c, has_official=False, **kw) if split is not None else np.arange(len(codes))
    meta: dict[str, Any] = {"split": split_c if split is not None else "given"}
    if dataset_id is not None:
        meta["dataset_id"] = str(dataset_id)
    return WrappedImageDataset(base, pos, codes, names, None, name=name, meta=meta, hashes=hashes)
