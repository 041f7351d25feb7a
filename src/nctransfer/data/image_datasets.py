"""The dataset types :func:`~nctransfer.data.load_dataset` returns: :class:`ArrayImageDataset` (images held in
memory, transformed a batch at a time) and :class:`WrappedImageDataset` (a view of a map-style dataset read item by
item), both with ``targets``, ``classes``, ``transform``, ``subset()``, ``with_transform()``, a content
``fingerprint()`` (:mod:`nctransfer.data.fingerprint`) and ``describe()``."""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from nctransfer.data.fingerprint import FOLDER_DECODED_SAMPLE, file_sha256, image_digest, seeded_positions
from nctransfer.data.images import to_float_tensor
from nctransfer.data.items import item_pair
from nctransfer.data.transforms import EvalTransform, transform_key
from nctransfer.exceptions import InputValueError, ShapeError


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
        blob = json.dumps({"name": self.name, "content": self._content_id(), "transform": transform_key(self.transform),
                           "meta": {k: v for k, v in self.meta.items() if k != "root"}}, sort_keys=True, default=str)
        return hashlib.sha1(blob.encode()).hexdigest()[:20]

    def describe(self) -> dict[str, Any]:
        """JSON-able description (name, size, classes, split, subsampling, transform)."""
        return {"name": self.name, "n": len(self), "n_classes": len(self.classes), "classes": list(self.classes),
                "transform": transform_key(self.transform), **self.meta}

    def __len__(self) -> int:  # pragma: no cover - overridden
        raise NotImplementedError

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name={self.name!r}, n={len(self)}, classes={len(self.classes)}, "
                f"transform={transform_key(self.transform)})")


class ArrayImageDataset(_LabeledBase, Dataset):
    """In-memory images ``[N, C, H, W]`` (uint8, or float in ``[0, 1]``) with labels ``targets [N]`` (int64).

    ``ds[i]`` gives ``(x, y)``: ``x`` the transformed image (``[C, H, W]`` float in ``[0, 1]`` without a
    transform); :meth:`get_batch` transforms many images in one tensor operation when the transform is an
    :class:`~nctransfer.data.transforms.EvalTransform` (or has a ``batch`` method).
    """

    def __init__(self, images: Any, targets: Any, classes: Sequence[str] | None = None, transform: Any = None,
                 name: str = "arrays", meta: dict[str, Any] | None = None) -> None:
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
        idx = torch.as_tensor(np.asarray(indices, dtype=np.int64))
        x = self._prep(self.images.index_select(0, idx))
        t = self.transform
        if t is not None:
            x = t.batch(x) if hasattr(t, "batch") else torch.stack([t(img) for img in x])
        return x, torch.as_tensor(self.targets[idx.numpy()])

    def subset(self, indices: Any, **meta: Any) -> "ArrayImageDataset":
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


class WrappedImageDataset(_LabeledBase, Dataset):
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
            where = f"{self.name}[{j}]"
            self._hashes[key] = image_digest(item_pair(_read_item(self.base, j, where), where)[0])
        return self._hashes[key]

    def _file_hash(self, j: int, path: str) -> str:
        key = ("file", j)
        if key not in self._hashes:
            self._hashes[key] = file_sha256(path)
        return self._hashes[key]

    def _content_id(self) -> str:
        """Length, labels and content (see :mod:`nctransfer.data.fingerprint`)."""
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


def item_path(base: Any, j: int) -> str | None:
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
        path = item_path(base, j)
        if path is None:
            raise
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputValueError(f"image file {path!r} ({where}) could not be read (corrupt or truncated?): {first}. "
                              "Remove or replace it, or skip unreadable images with --skip-bad-images "
                              "(load_dataset(..., skip_bad_images=True)).") from None


def images_to_nchw(X: Any, name: str = "X") -> Any:
    """Arrays/tensors of images -> torch ``[N, C, H, W]`` (uint8 kept, floats as float32)."""
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
