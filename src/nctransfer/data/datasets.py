"""``load_dataset``: labelled image datasets as torch ``Dataset`` objects with ``.targets`` and ``.classes``.

Specs:

- ``"fashion-mnist"`` (aliases ``fashion_mnist``, ``fmnist``): the IDX files of the Debian package
  ``dataset-fashion-mnist`` (or ``root=``, ``$NCTRANSFER_FASHION_MNIST``); official train (60000) / test (10000).
- ``"digits"``: scikit-learn's 8x8 digits (1797 images, values 0-16 scaled to ``[0, 1]``).
- a directory: ``torchvision.datasets.ImageFolder`` (``root/class_x/*.png``); if it has ``train/`` and
  ``test/`` (optionally ``val/``) sub-directories those are the splits.
- ``"torchvision:<Name>"``: ``torchvision.datasets.<Name>`` under ``root`` (default
  ``~/.cache/nctransfer/torchvision``); downloads only with ``download=True``.
- ``(X, y)``: in-memory images ``[N, H, W]``, ``[N, H, W, C]`` or ``[N, C, H, W]`` (uint8, or float in
  ``[0, 1]``) and labels ``[N]``.

Splits (``split=``): ``"train"``, ``"val"``, ``"test"``, ``"trainval"`` (= train + val), ``"all"``. With an
official train/test split, ``val`` is a stratified ``val_fraction`` of the official training set and ``train``
the rest (``trainval`` is the whole official training set). Without one (digits, arrays, a flat folder),
``test`` is a stratified ``test_fraction`` of all data and ``val`` a ``val_fraction`` of the remainder. Splits
are seeded by ``split_seed`` (default 0): always the same.

Datasets held in memory (Fashion-MNIST, digits, arrays, and torchvision datasets that expose ``.data`` such as
MNIST or CIFAR) transform whole batches as tensor operations in :meth:`ArrayImageDataset.get_batch`.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from nctransfer.data.arrays import FASHION_MNIST_CLASSES, load_digits_arrays, load_fashion_mnist_arrays
from nctransfer.data.splits import balanced_indices, canonical_split, stratified_holdout
from nctransfer.data.transforms import EvalTransform, eval_transform, to_float_tensor
from nctransfer.exceptions import InputValueError, NotFoundError, ShapeError

BUILTIN = {"fashion-mnist": "fashion-mnist", "fashion_mnist": "fashion-mnist", "fmnist": "fashion-mnist",
           "fashionmnist": "fashion-mnist", "digits": "digits", "sklearn-digits": "digits"}
TORCHVISION_ROOT = "~/.cache/nctransfer/torchvision"


def _transform_key(transform: Any) -> str:
    if transform is None:
        return "raw"
    if isinstance(transform, EvalTransform):
        return transform.key
    return getattr(transform, "key", None) or repr(transform)


def _hash_indices(indices: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(indices, dtype=np.int64).tobytes()).hexdigest()[:16]


class _LabeledBase:
    """Shared behaviour: ``targets`` (int64 numpy ``[N]``), ``classes``, ``transform``, ``fingerprint()``."""

    name: str
    classes: list[str]
    transform: Any
    targets: np.ndarray
    meta: dict[str, Any]

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def class_counts(self) -> np.ndarray:
        return np.bincount(self.targets, minlength=len(self.classes))

    def _content_id(self) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    def fingerprint(self) -> str:
        """Stable identity of (data, labels, selection, transform): part of feature-cache keys."""
        blob = json.dumps({"name": self.name, "content": self._content_id(), "transform": _transform_key(self.transform),
                           "meta": {k: v for k, v in self.meta.items() if k != "root"}}, sort_keys=True, default=str)
        return hashlib.sha1(blob.encode()).hexdigest()[:20]

    def describe(self) -> dict[str, Any]:
        """JSON-able description (name, size, classes, split, subsampling, transform)."""
        return {"name": self.name, "n": len(self), "n_classes": len(self.classes), "classes": list(self.classes),
                "transform": _transform_key(self.transform), **self.meta}

    def __len__(self) -> int:  # pragma: no cover - overridden
        raise NotImplementedError

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name={self.name!r}, n={len(self)}, classes={len(self.classes)}, "
                f"transform={_transform_key(self.transform)})")


def _make_torch_dataset_base() -> Any:
    from nctransfer.utils.extras import require_extra

    require_extra("torch", "nctransfer.data.datasets", ("torch",))  # torch is optional: name the extra
    from torch.utils.data import Dataset

    return Dataset


class ArrayImageDataset(_LabeledBase, _make_torch_dataset_base()):
    """In-memory images ``[N, C, H, W]`` (uint8, or float in ``[0, 1]``) with labels ``targets [N]`` (int64).

    ``ds[i]`` gives ``(x, y)``: ``x`` the transformed image (``[C, H, W]`` float in ``[0, 1]`` without a
    transform); :meth:`get_batch` transforms many images in one tensor operation when the transform is an
    :class:`~nctransfer.data.transforms.EvalTransform` (or has a ``batch`` method).
    """

    def __init__(self, images: Any, targets: Any, classes: Sequence[str] | None = None, transform: Any = None,
                 name: str = "arrays", meta: dict[str, Any] | None = None) -> None:
        import torch

        self.images = images if torch.is_tensor(images) else torch.as_tensor(images)
        if self.images.ndim != 4:
            raise ShapeError(f"ArrayImageDataset: images must be [N, C, H, W]; got {tuple(self.images.shape)}.")
        self.targets = np.asarray(targets, dtype=np.int64)
        if len(self.targets) != len(self.images):
            raise ShapeError(f"ArrayImageDataset: {len(self.images)} images but {len(self.targets)} labels.")
        n_cls = int(self.targets.max()) + 1 if len(self.targets) else 0
        self.classes = list(classes) if classes is not None else [str(i) for i in range(n_cls)]
        self.transform = transform
        self.name = name
        self.meta = dict(meta or {})

    def __len__(self) -> int:
        return len(self.targets)

    def _prep(self, x: Any) -> Any:
        import torch

        if x.dtype == torch.uint8:
            return x.float().div_(255.0)
        return x.float()

    def __getitem__(self, i: int) -> tuple[Any, int]:
        x = self._prep(self.images[i:i + 1] if isinstance(i, (int, np.integer)) else self.images[i])
        y = int(self.targets[i])
        t = self.transform
        if t is None:
            return x[0], y
        if hasattr(t, "batch"):
            return t.batch(x)[0], y
        return t(x[0]), y

    def get_batch(self, indices: Any) -> tuple[Any, Any]:
        """``(X [B, ...], y [B] int64)`` for the given positions, transformed as one batch."""
        import torch

        idx = torch.as_tensor(np.asarray(indices, dtype=np.int64))
        x = self._prep(self.images.index_select(0, idx))
        t = self.transform
        if t is not None:
            x = t.batch(x) if hasattr(t, "batch") else torch.stack([t(img) for img in x])
        return x, torch.as_tensor(self.targets[idx.numpy()])

    def subset(self, indices: Any, **meta: Any) -> "ArrayImageDataset":
        import torch

        idx = np.asarray(indices, dtype=np.int64)
        return ArrayImageDataset(self.images.index_select(0, torch.as_tensor(idx)), self.targets[idx], self.classes,
                                 self.transform, self.name, {**self.meta, **meta})

    def with_transform(self, transform: Any) -> "ArrayImageDataset":
        return ArrayImageDataset(self.images, self.targets, self.classes, transform, self.name, self.meta)

    def _content_id(self) -> str:
        h = hashlib.sha1()
        h.update(str(tuple(self.images.shape)).encode() + str(self.images.dtype).encode())
        h.update(self.images.contiguous().numpy().tobytes())
        h.update(self.targets.tobytes())
        return h.hexdigest()[:20]


class WrappedImageDataset(_LabeledBase, _make_torch_dataset_base()):
    """A view (``indices``) of a dataset yielding ``(image, label)`` (ImageFolder, torchvision), with our transform
    applied per item (PIL or tensor input)."""

    def __init__(self, base: Any, indices: Any, targets: Any, classes: Sequence[str], transform: Any = None,
                 name: str = "dataset", meta: dict[str, Any] | None = None) -> None:
        self.base = base
        self.indices = np.asarray(indices, dtype=np.int64)
        self.targets = np.asarray(targets, dtype=np.int64)[self.indices]
        self._all_targets = np.asarray(targets, dtype=np.int64)
        self.classes = list(classes)
        self.transform = transform
        self.name = name
        self.meta = dict(meta or {})

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        img, _ = self.base[int(self.indices[i])]
        x = self.transform(img) if self.transform is not None else to_float_tensor(img)
        return x, int(self.targets[i])

    def get_batch(self, indices: Any) -> tuple[Any, Any]:
        import torch

        items = [self[int(i)] for i in np.asarray(indices)]
        return torch.stack([x for x, _ in items]), torch.as_tensor([y for _, y in items], dtype=torch.int64)

    def subset(self, indices: Any, **meta: Any) -> "WrappedImageDataset":
        return WrappedImageDataset(self.base, self.indices[np.asarray(indices, dtype=np.int64)], self._all_targets,
                                   self.classes, self.transform, self.name, {**self.meta, **meta})

    def with_transform(self, transform: Any) -> "WrappedImageDataset":
        out = WrappedImageDataset(self.base, self.indices, self._all_targets, self.classes, transform, self.name,
                                  self.meta)
        return out

    def _content_id(self) -> str:
        files = getattr(self.base, "samples", None)
        h = hashlib.sha1(_hash_indices(self.indices).encode())
        if files is not None:  # ImageFolder: file list + sizes/mtimes of the selected files
            for j in self.indices:
                p = files[int(j)][0]
                try:
                    st = os.stat(p)
                    h.update(f"{p}|{st.st_size}|{int(st.st_mtime)}".encode())
                except OSError:
                    h.update(p.encode())
        h.update(self.targets.tobytes())
        return h.hexdigest()[:20]


LabeledDataset = (ArrayImageDataset, WrappedImageDataset)


# ------------------------------------------------------------------------------------------------ helpers
def _images_to_nchw(X: Any, name: str = "X") -> Any:
    """Arrays/tensors of images -> torch ``[N, C, H, W]`` (uint8 kept, floats as float32)."""
    import torch

    if torch.is_tensor(X):
        t = X
    else:
        arr = np.asarray(X)
        t = torch.from_numpy(arr if arr.flags.writeable and arr.flags.c_contiguous else np.array(arr))
    if t.ndim == 3:
        t = t.unsqueeze(1)
    elif t.ndim == 4:
        if t.shape[-1] in (1, 3, 4) and t.shape[1] not in (1, 3, 4):
            t = t.permute(0, 3, 1, 2)
    else:
        raise ShapeError(f"{name} must be images [N, H, W], [N, H, W, C] or [N, C, H, W]; got shape "
                         f"{tuple(t.shape)}.")
    if t.dtype == torch.uint8:
        return t.contiguous()
    if not torch.is_floating_point(t):
        raise InputValueError(f"{name}: integer images must be uint8 (0-255); got {t.dtype}. Convert to uint8 or to "
                              "floats in [0, 1].")
    t = t.float()
    if len(t) and (float(t.min()) < -1e-6 or float(t.max()) > 1.0 + 1e-6):
        raise InputValueError(f"{name}: float images must lie in [0, 1]; got values in [{float(t.min()):.4g}, "
                              f"{float(t.max()):.4g}]. Scale them (e.g. X / 255) or pass uint8.")
    return t.contiguous()


def _split_positions(targets: np.ndarray, split: str, *, has_official: bool, val_fraction: float,
                     test_fraction: float, seed: int) -> np.ndarray:
    """Positions of ``split`` within the pool ``targets`` (see module docstring)."""
    n = len(targets)
    if has_official:  # the pool is the official training set
        if split == "trainval":
            return np.arange(n)
        keep, val = stratified_holdout(targets, val_fraction, seed)
        if split == "val" and len(val) == 0:
            raise InputValueError("split='val' needs val_fraction > 0.")
        return keep if split == "train" else val
    if split == "all":
        return np.arange(n)
    rest, test = stratified_holdout(targets, test_fraction, seed)
    if split == "test":
        if len(test) == 0:
            raise InputValueError("split='test' needs test_fraction > 0.")
        return test
    if split == "trainval":
        return rest
    keep, val = stratified_holdout(targets[rest], val_fraction, seed + 1)
    if split == "val" and len(val) == 0:
        raise InputValueError("split='val' needs val_fraction > 0.")
    return rest[keep] if split == "train" else rest[val]


def subsample(dataset: Any, per_class: int | None = None, *, n: int | None = None, seed: int = 0,
              strict: bool = False) -> Any:
    """Seeded balanced subset of a dataset from :func:`load_dataset` (``per_class`` samples of every class, or a
    total ``n`` spread evenly); see :func:`nctransfer.data.splits.balanced_indices`."""
    idx = balanced_indices(dataset.targets, per_class, n=n, seed=seed, strict=strict)
    return dataset.subset(idx, subsample={"per_class": per_class, "n": n, "seed": seed})


# ------------------------------------------------------------------------------------------------ loaders
def _fashion(split: str, root: Any, **kw: Any) -> tuple[Any, np.ndarray, list[str], dict[str, Any]]:
    if split == "test":
        X, y = load_fashion_mnist_arrays("test", root)
        return X, y, FASHION_MNIST_CLASSES, {}
    if split == "all":
        raise InputValueError("fashion-mnist has an official train/test split; use split='train', 'val', 'test' or "
                              "'trainval'.")
    X, y = load_fashion_mnist_arrays("train", root)
    pos = _split_positions(y, split, has_official=True, **kw)
    return X[pos], y[pos], FASHION_MNIST_CLASSES, {}


def _digits(split: str, **kw: Any) -> tuple[Any, np.ndarray, list[str], dict[str, Any]]:
    X, y = load_digits_arrays()
    pos = _split_positions(y, split, has_official=False, **kw)
    return (X[pos] / 16.0).astype(np.float32), y[pos], [str(i) for i in range(10)], {}


def _image_folder(path: Path, split: str, transform: Any, **kw: Any) -> WrappedImageDataset:
    from torchvision.datasets import ImageFolder

    subdirs = {p.name.lower(): p for p in path.iterdir() if p.is_dir()}
    val_dir = next((subdirs[k] for k in ("val", "valid", "validation") if k in subdirs), None)
    if "train" in subdirs and "test" in subdirs:
        if split == "test":
            folder, official = subdirs["test"], "folder"
        elif val_dir is not None and split == "val":
            folder, official = val_dir, "folder"
        elif val_dir is not None and split == "train":
            folder, official = subdirs["train"], "folder"
        elif split == "all":
            raise InputValueError(f"{path} has train/ and test/ sub-directories; use split='train', 'val', 'test' "
                                  "or 'trainval'.")
        else:
            folder, official = subdirs["train"], "carve"
    else:
        folder, official = path, "flat"
    try:
        base = ImageFolder(str(folder))
    except (FileNotFoundError, RuntimeError) as exc:
        raise NotFoundError(f"no images found under {folder} (expected {folder}/<class>/<image>): {exc}") from exc
    targets = np.asarray(base.targets, dtype=np.int64)
    if official == "folder":
        pos = np.arange(len(targets))
    else:
        pos = _split_positions(targets, split, has_official=(official == "carve"), **kw)
    return WrappedImageDataset(base, pos, targets, base.classes, transform, name=f"folder:{path.resolve()}",
                               meta={"split": split, "root": str(path.resolve())})


def _torchvision(name: str, split: str, transform: Any, root: Any, download: bool, **kw: Any) -> Any:
    import inspect

    import torchvision.datasets as tvd

    available = [n for n in dir(tvd) if not n.startswith("_") and inspect.isclass(getattr(tvd, n))]
    if name not in available:
        import difflib

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
        pos = _split_positions(targets, split, has_official=has_official, **kw)
    meta = {"split": split, "root": str(root)}
    data = getattr(base, "data", None)
    if data is not None and hasattr(data, "shape") and len(data) == len(targets) and np.asarray(data[:1]).ndim in (3, 4):
        images = _images_to_nchw(data[pos] if not hasattr(data, "numpy") else data[pos], f"{name}.data")
        return ArrayImageDataset(images, targets[pos], classes, transform, name=f"torchvision:{name}", meta=meta)
    return WrappedImageDataset(base, pos, targets, classes, transform, name=f"torchvision:{name}", meta=meta)


def load_dataset(
    spec: Any,
    split: str | None = None,
    transform: Callable[[Any], Any] | None = None,
    *,
    model: Any = None,
    image_size: int | Sequence[int] | None = None,
    crop_pct: float | None = None,
    per_class: int | None = None,
    n: int | None = None,
    seed: int = 0,
    root: str | os.PathLike | None = None,
    download: bool = False,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    split_seed: int = 0,
    classes: Sequence[str] | None = None,
) -> Any:
    """Load a labelled image dataset (see the module docstring for ``spec`` and ``split``).

    Args:
        spec: ``"fashion-mnist"``, ``"digits"``, an ImageFolder directory, ``"torchvision:<Name>"`` or ``(X, y)``.
        split: ``"train"`` (default for named datasets), ``"val"``, ``"test"``, ``"trainval"``, ``"all"``
            (default for ``(X, y)``).
        transform: applied to every image; default: the model's eval transform if ``model`` is given (see
            :func:`nctransfer.data.eval_transform`), else none (images as float ``[C, H, W]`` in ``[0, 1]``).
        model: a model (or ModelInfo) whose preprocessing builds the default transform.
        image_size: resize to this size instead of the model's input size.
        crop_pct: centre-crop fraction of the default transform; default 1.0 (no crop) for in-memory datasets
            (tightly framed small images), the model's own value for ImageFolder/torchvision file datasets.
        per_class: seeded balanced subsample of this many images per class (after the split).
        n: alternatively a seeded balanced subsample of ``n`` images in total.
        seed: seed of the subsample.
        root: data directory (Fashion-MNIST IDX files, torchvision root).
        download: allow torchvision to download (never by default).
        val_fraction, test_fraction, split_seed: split definition (module docstring).
        classes: class names for ``(X, y)``.

    Returns:
        a ``torch.utils.data.Dataset`` (:class:`ArrayImageDataset` or :class:`WrappedImageDataset`) with
        ``targets`` (int64 ``[N]``), ``classes``, ``transform``, ``get_batch(indices)``, ``subset(indices)``,
        ``fingerprint()`` and ``describe()``.

    Example:
        >>> ds = load_dataset("digits", "train", per_class=5)
        >>> len(ds), ds[0][0].shape, sorted(set(ds.targets.tolist())) == list(range(10))
        (50, torch.Size([1, 8, 8]), True)
    """
    kw = {"val_fraction": float(val_fraction), "test_fraction": float(test_fraction), "seed": int(split_seed)}
    if not 0.0 <= kw["val_fraction"] < 1.0 or not 0.0 <= kw["test_fraction"] < 1.0:
        raise InputValueError(f"val_fraction and test_fraction must be in [0, 1); got {val_fraction!r}, "
                              f"{test_fraction!r}.")
    is_arrays = isinstance(spec, (tuple, list)) and len(spec) == 2 and not isinstance(spec[0], str)
    split_c = canonical_split(split if split is not None else ("all" if is_arrays else "train"))
    in_memory = True
    if is_arrays:
        X, y = spec
        images = _images_to_nchw(X, "X")
        from nctransfer.utils.validation import LabelEncoder, check_labels

        y_arr = check_labels(y, len(images), "y")
        enc = LabelEncoder()
        codes = np.asarray(enc.encode(y_arr), dtype=np.int64)
        order = enc.sorted_order()  # re-encode so that classes are in sorted order
        remap = np.empty(len(order), dtype=np.int64)
        remap[order] = np.arange(len(order))
        codes = remap[codes]
        names = list(classes) if classes is not None else [str(enc.classes[i]) for i in order]
        if len(names) != len(order):
            raise InputValueError(f"classes has {len(names)} names but y has {len(order)} distinct labels.")
        pos = _split_positions(codes, split_c, has_official=False, **kw)
        ds: Any = ArrayImageDataset(images[pos], codes[pos], names, None, name="arrays", meta={"split": split_c})
    elif isinstance(spec, (str, os.PathLike)):
        s = str(spec)
        key = BUILTIN.get(s.lower())
        if key == "fashion-mnist":
            X, y, names, _ = _fashion(split_c, root, **kw)
            ds = ArrayImageDataset(_images_to_nchw(X), y, names, None, name="fashion-mnist", meta={"split": split_c})
        elif key == "digits":
            X, y, names, _ = _digits(split_c, **kw)
            ds = ArrayImageDataset(_images_to_nchw(X), y, names, None, name="digits", meta={"split": split_c})
        elif s.lower().startswith(("torchvision:", "tv:")):
            ds = _torchvision(s.split(":", 1)[1], split_c, None, root, download, **kw)
            in_memory = isinstance(ds, ArrayImageDataset)
        elif Path(s).expanduser().is_dir():
            ds = _image_folder(Path(s).expanduser(), split_c, None, **kw)
            in_memory = False
        else:
            import difflib

            close = difflib.get_close_matches(s.lower(), list(BUILTIN), n=3, cutoff=0.5)
            raise NotFoundError(
                f"unknown dataset {s!r}: not a built-in name ({', '.join(sorted(set(BUILTIN.values())))}), not "
                "'torchvision:<Name>' and not an existing directory." + (f" Did you mean: {', '.join(close)}?"
                                                                          if close else ""))
    elif hasattr(spec, "targets") and hasattr(spec, "__getitem__"):
        targets = np.asarray(spec.targets, dtype=np.int64)
        classes_ = list(getattr(spec, "classes", None) or [str(i) for i in range(int(targets.max()) + 1)])
        pos = _split_positions(targets, split_c, has_official=False, **kw) if split is not None else np.arange(
            len(targets))
        ds = WrappedImageDataset(spec, pos, targets, classes_, None, name=type(spec).__name__,
                                 meta={"split": split_c if split is not None else "all"})
        in_memory = False
    else:
        raise InputValueError(f"load_dataset: spec must be a dataset name, a directory, 'torchvision:<Name>', "
                              f"(X, y) arrays or a dataset with .targets; got {type(spec).__name__}.")
    if per_class is not None or n is not None:
        ds = subsample(ds, per_class, n=n, seed=seed)
    if transform is None and model is not None:
        cp = crop_pct if crop_pct is not None else (1.0 if in_memory else None)
        transform = eval_transform(model, image_size=image_size, crop_pct=cp)
    elif transform is None and image_size is not None:
        raise InputValueError("image_size needs model= (whose mean/std/interpolation define the transform) or an "
                              "explicit transform.")
    if transform is not None:
        ds.transform = transform
    return ds
