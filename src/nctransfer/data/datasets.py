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
- ``"hf:<name>"``: a Hugging Face hub dataset (``datasets.load_dataset``; online or its local cache).
- the user's own data (:mod:`nctransfer.data.inputs`): a map-style ``Dataset`` yielding ``(image, label)`` (PIL
  image, ``uint8``/float tensor ``[C, H, W]`` or numpy array), a ``DataLoader`` (used as given), a Hugging Face
  ``datasets.Dataset`` / ``DatasetDict``, an iterable stream with ``dataset_id=``.
- explicit splits: ``train=``, ``test=`` (and ``val=``), or a dict ``{"train": ..., "test": ...}``: each used as
  given, never re-split.

Every dataset that is not a built-in is fingerprinted by its content for the feature cache (what is hashed:
:mod:`nctransfer.data.fingerprint`).

Splits (``split=``): ``"train"``, ``"val"``, ``"test"``, ``"trainval"`` (= train + val), ``"all"``. With an
official train/test split, ``val`` is a stratified ``val_fraction`` of the official training set and ``train``
the rest (``trainval`` is the whole official training set). Without one (digits, arrays, a flat folder),
``test`` is a stratified ``test_fraction`` of all data and ``val`` a ``val_fraction`` of the remainder. Splits
are seeded by ``split_seed`` (default 0): always the same.

Datasets held in memory (Fashion-MNIST, digits, arrays, and torchvision datasets that expose ``.data`` such as
MNIST or CIFAR) transform whole batches as tensor operations in :meth:`ArrayImageDataset.get_batch`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from nctransfer.data import inputs as I
from nctransfer.data.arrays import FASHION_MNIST_CLASSES, load_digits_arrays, load_fashion_mnist_arrays
from nctransfer.data.fingerprint import image_digest
from nctransfer.data.inputs import LoaderDataset, is_dataloader, is_hf_dataset, item_pair
from nctransfer.data.splits import balanced_indices, canonical_split, stratified_holdout
from nctransfer.data.transforms import EvalTransform, eval_transform, to_float_tensor
from nctransfer.data.transforms import transform_key as _transform_key
from nctransfer.exceptions import InputValueError, NotFoundError, ShapeError

BUILTIN = {"fashion-mnist": "fashion-mnist", "fashion_mnist": "fashion-mnist", "fmnist": "fashion-mnist",
           "fashionmnist": "fashion-mnist", "digits": "digits", "sklearn-digits": "digits"}
TORCHVISION_ROOT = "~/.cache/nctransfer/torchvision"


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
    """A view (``indices``) of a map-style dataset yielding ``(image, label)`` (ImageFolder, torchvision, the user's
    own ``Dataset``, a Hugging Face dataset through :class:`~nctransfer.data.inputs.HFImageSource`), with our
    transform applied per item (PIL, numpy or tensor input).

    Its fingerprint depends on the content (:mod:`nctransfer.data.fingerprint`): the decoded bytes of every
    selected sample, or for an image folder the full SHA-256 of every selected file plus a seeded sample of decoded
    images. Per-sample hashes are computed once and shared by the subsets and re-transformed copies of this
    dataset (``hashes``).
    """

    def __init__(self, base: Any, indices: Any, targets: Any, classes: Sequence[str], transform: Any = None,
                 name: str = "dataset", meta: dict[str, Any] | None = None,
                 hashes: dict[Any, str] | None = None) -> None:
        self.base = base
        self.indices = np.asarray(indices, dtype=np.int64)
        self.targets = np.asarray(targets, dtype=np.int64)[self.indices]
        self._all_targets = np.asarray(targets, dtype=np.int64)
        self.classes = list(classes)
        self.transform = transform
        self.name = name
        self.meta = dict(meta or {})
        self._hashes: dict[Any, str] = hashes if hashes is not None else {}

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        j = int(self.indices[i])
        where = f"{self.name}[{j}]"
        img, _ = item_pair(_read_item(self.base, j, where), where)
        t = self.transform
        if t is None:
            x = to_float_tensor(img, where)
        elif isinstance(t, EvalTransform):
            x = t.batch(to_float_tensor(img, where).unsqueeze(0))[0]
        else:
            x = t(img)
        return x, int(self.targets[i])

    def get_batch(self, indices: Any) -> tuple[Any, Any]:
        import torch

        items = [self[int(i)] for i in np.asarray(indices)]
        return torch.stack([x for x, _ in items]), torch.as_tensor([y for _, y in items], dtype=torch.int64)

    def subset(self, indices: Any, **meta: Any) -> "WrappedImageDataset":
        return WrappedImageDataset(self.base, self.indices[np.asarray(indices, dtype=np.int64)], self._all_targets,
                                   self.classes, self.transform, self.name, {**self.meta, **meta}, self._hashes)

    def with_transform(self, transform: Any) -> "WrappedImageDataset":
        return WrappedImageDataset(self.base, self.indices, self._all_targets, self.classes, transform, self.name,
                                   self.meta, self._hashes)

    def _sample_hash(self, j: int) -> str:
        key = ("img", j)
        if key not in self._hashes:
            self._hashes[key] = image_digest(item_pair(_read_item(self.base, j, f"{self.name}[{j}]"),
                                                       f"{self.name}[{j}]")[0])
        return self._hashes[key]

    def _file_hash(self, j: int, path: str) -> str:
        from nctransfer.data.fingerprint import file_sha256

        key = ("file", j)
        if key not in self._hashes:
            self._hashes[key] = file_sha256(path)
        return self._hashes[key]

    def _content_id(self) -> str:
        """Length, labels and content (see :mod:`nctransfer.data.fingerprint`)."""
        from tqdm.auto import tqdm

        from nctransfer.data.fingerprint import FOLDER_DECODED_SAMPLE, seeded_positions

        if self.meta.get("dataset_id") is not None:  # the user's own identity (streams; opt-out of hashing)
            return f"id:{self.meta['dataset_id']}:" + _hash_indices(self.indices) + hashlib.sha1(
                self.targets.tobytes()).hexdigest()[:16]
        files = getattr(self.base, "samples", None)
        h = hashlib.sha1(f"n={len(self.indices)}|".encode())
        h.update(self.targets.tobytes())
        is_folder = isinstance(files, list) and len(files) == len(self._all_targets) and all(
            isinstance(f, (tuple, list)) and isinstance(f[0], (str, os.PathLike)) for f in files[:1])
        show = len(self.indices) >= 2000
        if is_folder:
            root = str(getattr(self.base, "root", ""))
            for j in tqdm(self.indices, desc=f"hashing {self.name} files", unit="file", leave=False,
                          disable=not show):
                p = str(files[int(j)][0])
                rel = os.path.relpath(p, root) if root else p
                h.update(f"{rel}|{self._file_hash(int(j), p)}|".encode())
            for pos in seeded_positions(len(self.indices), FOLDER_DECODED_SAMPLE, 0):
                h.update(self._sample_hash(int(self.indices[pos])).encode())
        else:
            for j in tqdm(self.indices, desc=f"hashing {self.name}", unit="img", leave=False, disable=not show):
                h.update(self._sample_hash(int(j)).encode())
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


_SKIP_BAD_IMAGES = False  # default of load_dataset(skip_bad_images=...); the CLI's --skip-bad-images sets it


@contextlib.contextmanager
def skip_bad_images(enabled: bool = True) -> Iterator[None]:
    """Within this block :func:`load_dataset` skips unreadable image files as if ``skip_bad_images=True`` was
    passed (the CLI's ``--skip-bad-images`` uses it so that pipelines that load data deep inside honour it)."""
    global _SKIP_BAD_IMAGES
    old, _SKIP_BAD_IMAGES = _SKIP_BAD_IMAGES, bool(enabled)
    try:
        yield
    finally:
        _SKIP_BAD_IMAGES = old


def _item_path(base: Any, j: int) -> str | None:
    samples = getattr(base, "samples", None)  # torchvision ImageFolder / DatasetFolder: [(path, class), ...]
    try:
        return str(samples[j][0]) if samples is not None else None
    except (IndexError, TypeError, KeyError):
        return None


def _read_item(base: Any, j: int, where: str) -> Any:
    """``base[j]``; an image file that cannot be decoded raises one :class:`InputValueError` naming the file."""
    try:
        return base[j]
    except (OSError, ValueError, SyntaxError) as exc:  # PIL: UnidentifiedImageError (OSError), truncated files
        path = _item_path(base, j)
        if path is None:
            raise
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputValueError(f"image file {path!r} ({where}) could not be read (corrupt or truncated?): {first}. "
                              "Remove or replace it, or skip unreadable images with --skip-bad-images "
                              "(load_dataset(..., skip_bad_images=True)).") from None


def _drop_bad_images(ds: "WrappedImageDataset") -> "WrappedImageDataset":
    """``ds`` without the items whose image file cannot be decoded (each file is opened and fully decoded once);
    the skipped files are listed in ``ds.meta["skipped_images"]`` and reported with a warning."""
    from PIL import Image

    bad: list[str] = []
    keep: list[int] = []
    for i, j in enumerate(ds.indices.tolist()):
        path = _item_path(ds.base, j)
        if path is None:
            keep.append(i)
            continue
        try:
            with Image.open(path) as im:
                im.load()
            keep.append(i)
        except (OSError, ValueError, SyntaxError) as exc:
            bad.append(f"{path} ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})")
    if not bad:
        return ds
    warnings.warn(f"skipped {len(bad)} unreadable image file(s) of {ds.name}: {'; '.join(bad[:10])}"
                  f"{' ...' if len(bad) > 10 else ''}", UserWarning, stacklevel=3)
    out = ds.subset(np.asarray(keep, dtype=np.int64))
    out.meta["skipped_images"] = bad
    return out


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


def _is_loaded(spec: Any) -> bool:
    """A dataset returned by :func:`load_dataset` (arrays, wrapped, DataLoader)."""
    return isinstance(spec, (ArrayImageDataset, WrappedImageDataset, LoaderDataset))


def _is_hf_dict(spec: Any) -> bool:
    return type(spec).__name__ in ("DatasetDict", "IterableDatasetDict") and (type(spec).__module__ or "").startswith(
        "datasets.")


def _is_dataset_like(spec: Any) -> bool:
    first = spec[0] if len(spec) else None
    try:
        from torch.utils.data import Dataset
    except ImportError:  # pragma: no cover
        return False
    return isinstance(first, Dataset) or is_dataloader(first) or is_hf_dataset(first)


def _hf_hub(name: str, root: Any) -> Any:
    """``hf:<name>`` (or ``hf:<name>:<config>``): ``datasets.load_dataset`` from the Hugging Face hub (online, or
    its local cache)."""
    try:
        import datasets
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


def _explicit_part(spec: Any, split: str | None) -> tuple[Any, str | None]:
    """The part of explicit splits (``{"train": ..., "test": ..., "val": ...}`` or a HF ``DatasetDict``) that
    ``split`` asks for, and the split to apply inside it (``None``: used as given)."""
    keys = {str(k).lower(): k for k in spec.keys()}
    s = canonical_split(split) if split is not None else "train"

    def get(name: str) -> Any:
        k = next((keys[c] for c in _SPLIT_KEYS[name] if c in keys), None)
        return None if k is None else spec[k]

    train, test, val = get("train"), get("test"), get("val")
    unknown = sorted(k for k in keys if not any(k in v for v in _SPLIT_KEYS.values()))
    if unknown and not _is_hf_dict(spec):
        raise InputValueError(f"explicit splits: unknown key(s) {unknown}; expected train, test and optionally val.")
    hf_carve = _is_hf_dict(spec) and test is None and train is not None
    if hf_carve:  # a hub dataset with a training split only: carve test/val from it (seeded, stratified)
        return train, s
    if s == "all":
        raise InputValueError("explicit splits (train=/test=/val=) are used as given; ask for split='train', 'test', "
                              "'val' or 'trainval'.")
    if s == "trainval" and val is not None:
        if train is None:
            raise InputValueError("split='trainval' needs train=.")
        if _is_hf_dict(spec) or type(train).__module__.startswith("datasets."):
            import datasets

            return datasets.concatenate_datasets([train, val]), None
        from torch.utils.data import ConcatDataset

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


def _user_dataset(spec: Any, split: str | None, split_c: str, kw: dict[str, Any], *, classes: Any,
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
    pos = _split_positions(codes, split_c, has_official=False, **kw) if split is not None else np.arange(len(codes))
    meta: dict[str, Any] = {"split": split_c if split is not None else "given"}
    if dataset_id is not None:
        meta["dataset_id"] = str(dataset_id)
    return WrappedImageDataset(base, pos, codes, names, None, name=name, meta=meta, hashes=hashes)


def load_dataset(
    spec: Any = None,
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
    train: Any = None,
    test: Any = None,
    val: Any = None,
    image_column: str | None = None,
    label_column: str | None = None,
    dataset_id: str | None = None,
    skip_bad_images: bool | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> Any:
    """Load a labelled image dataset (see the module docstring for ``spec`` and ``split``).

    Args:
        spec: ``"fashion-mnist"``, ``"digits"``, an ImageFolder directory, ``"torchvision:<Name>"`` or ``(X, y)``.
        split: ``"train"`` (default for named datasets), ``"val"``, ``"test"``, ``"trainval"``, ``"all"``
            (default for ``(X, y)``).
        transform: applied to every image; default: the model's own eval transform if ``model`` is given (see
            :func:`nctransfer.data.eval_transform`: timm's ``create_transform`` of the model's data configuration,
            torchvision's ``weights.transforms()``, the Hugging Face image processor), else none (images as float
            ``[C, H, W]`` in ``[0, 1]``).
        model: a model (or ModelInfo) whose preprocessing builds the default transform. A plain ``nn.Module``
            without preprocessing metadata needs ``transform=``, or ``image_size=`` with ``mean=`` and ``std=``.
        mean, std: normalisation for a plain ``nn.Module`` (with ``image_size``), or an override of the model's.
        image_size: resize to this size instead of the model's input size.
        crop_pct: centre-crop fraction of the default transform; default 1.0 (no crop) for in-memory datasets
            (tightly framed small images), the model's own value for ImageFolder/torchvision file datasets.
        per_class: seeded balanced subsample of this many images per class (after the split).
        n: alternatively a seeded balanced subsample of ``n`` images in total.
        seed: seed of the subsample.
        root: data directory (Fashion-MNIST IDX files, torchvision root).
        download: allow torchvision to download (never by default).
        val_fraction, test_fraction, split_seed: split definition (module docstring).
        classes: class names for ``(X, y)`` (and for user datasets with integer labels).
        train, test, val: explicit splits (any of the forms above), used as given and never re-split;
            ``split`` picks one of them (``"trainval"``: train, plus val when given). Same as
            ``spec={"train": ..., "test": ...}``; a Hugging Face ``DatasetDict`` works the same way.
        image_column, label_column: columns of a Hugging Face dataset (or keys of dict items); default found
            automatically (a ``datasets.Image`` / ``ClassLabel`` feature, else common names such as ``image`` and
            ``label``).
        dataset_id: identity of an iterable stream (required for one; see :mod:`nctransfer.data.fingerprint`).
        skip_bad_images: image folders only: open and decode every selected file first and leave out those that
            cannot be read (listed in ``ds.meta["skipped_images"]`` and reported with a warning); default (None):
            the CLI's ``--skip-bad-images`` (:func:`skip_bad_images`), else False -- an unreadable file then raises
            :class:`InputValueError` naming it when it is read.

    Returns:
        a ``torch.utils.data.Dataset`` (:class:`ArrayImageDataset` or :class:`WrappedImageDataset`) with
        ``targets`` (int64 ``[N]``), ``classes``, ``transform``, ``get_batch(indices)``, ``subset(indices)``,
        ``fingerprint()`` and ``describe()``.

    Examples:
        >>> ds = load_dataset("digits", "train", per_class=5)
        >>> len(ds), ds[0][0].shape, sorted(set(ds.targets.tolist())) == list(range(10))
        (50, torch.Size([1, 8, 8]), True)
    """
    kw = {"val_fraction": float(val_fraction), "test_fraction": float(test_fraction), "seed": int(split_seed)}
    if not 0.0 <= kw["val_fraction"] < 1.0 or not 0.0 <= kw["test_fraction"] < 1.0:
        raise InputValueError(f"val_fraction and test_fraction must be in [0, 1); got {val_fraction!r}, "
                              f"{test_fraction!r}.")
    if train is not None or test is not None or val is not None:
        if spec is not None:
            raise InputValueError("load_dataset: give either spec or explicit train=/test=/val= datasets, not both.")
        spec = {k: v for k, v in (("train", train), ("test", test), ("val", val)) if v is not None}
    if spec is None:
        raise InputValueError("load_dataset: spec is required (a dataset name, a directory, a Dataset, a DataLoader, "
                              "a Hugging Face dataset, (X, y) arrays), or explicit train= and test= datasets.")
    if isinstance(spec, str) and spec.lower().startswith("hf:"):
        spec = _hf_hub(spec[3:], root)
    if isinstance(spec, Mapping) or _is_hf_dict(spec):
        part, part_split = _explicit_part(spec, split)
        return load_dataset(part, part_split, transform, model=model, image_size=image_size, crop_pct=crop_pct,
                            per_class=per_class, n=n, seed=seed, root=root, download=download,
                            val_fraction=val_fraction, test_fraction=test_fraction, split_seed=split_seed,
                            classes=classes, image_column=image_column, label_column=label_column,
                            dataset_id=dataset_id, mean=mean, std=std, skip_bad_images=skip_bad_images)
    is_arrays = isinstance(spec, (tuple, list)) and len(spec) == 2 and not isinstance(spec[0], str) \
        and not _is_dataset_like(spec)
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
            if skip_bad_images or (skip_bad_images is None and _SKIP_BAD_IMAGES):
                ds = _drop_bad_images(ds)
            in_memory = False
        else:
            import difflib

            close = difflib.get_close_matches(s.lower(), list(BUILTIN), n=3, cutoff=0.5)
            raise NotFoundError(
                f"unknown dataset {s!r}: not a built-in name ({', '.join(sorted(set(BUILTIN.values())))}), not "
                "'torchvision:<Name>' and not an existing directory." + (f" Did you mean: {', '.join(close)}?"
                                                                          if close else ""))
    elif _is_loaded(spec):  # already loaded: re-targeted (another model's transform, a subsample), never re-hashed
        ds = spec
        if split is not None and canonical_split(split) != "all":
            if not hasattr(spec, "subset") or type(spec).__name__ == "LoaderDataset":
                ds.subset([])  # raises the DataLoader message
            ds = ds.subset(_split_positions(ds.targets, split_c, has_official=False, **kw), split=split_c)
        in_memory = isinstance(spec, ArrayImageDataset)
    else:
        ds = _user_dataset(spec, split, split_c, kw, classes=classes, image_column=image_column,
                           label_column=label_column, dataset_id=dataset_id)
        in_memory = False
    if per_class is not None or n is not None:
        ds = subsample(ds, per_class, n=n, seed=seed)
    if transform is None and model is not None:
        cp = crop_pct if crop_pct is not None else (1.0 if in_memory else None)
        transform = eval_transform(model, image_size=image_size, crop_pct=cp, mean=mean, std=std)
    elif transform is None and image_size is not None:
        raise InputValueError("image_size needs model= (whose mean/std/interpolation define the transform) or an "
                              "explicit transform.")
    if transform is not None:
        if ds is spec:
            ds = ds.with_transform(transform)
        else:
            ds.transform = transform
    return ds
