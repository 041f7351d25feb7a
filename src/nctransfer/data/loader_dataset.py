"""A ``torch.utils.data.DataLoader`` used as given, as a dataset of :func:`~nctransfer.data.load_dataset`
(:class:`LoaderDataset`), and the loader over an iterable stream (:func:`stream_loader`)."""

from __future__ import annotations

import hashlib
import json
import warnings
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, RandomSampler

from nctransfer.data.fingerprint import update_with_image
from nctransfer.data.images import to_float_tensor
from nctransfer.data.items import encode_labels, item_pair
from nctransfer.data.transforms import transform_key
from nctransfer.exceptions import InputValueError, ShapeError


class LoaderDataset:
    """A ``DataLoader`` used as given: its batches (sampler, batch size, collate function) fed one after the
    other, labels read from the batches.

    ``targets`` and the content fingerprint come from one pass over the loader (no model involved), made the first
    time either is needed. nctransfer's ``transform`` (the model's preprocessing) is applied to each batch: an
    :class:`~nctransfer.data.transforms.EvalTransform` on the whole ``[B, C, H, W]`` batch, any other callable per
    image; without one the batch is used as given (``uint8`` scaled to ``[0, 1]``).

    A DataLoader cannot be split or subsampled (it is used as given): pass ``train=`` and ``test=`` loaders.
    """

    def __init__(self, loader: Any, transform: Any = None, classes: Sequence[str] | None = None,
                 name: str | None = None, dataset_id: str | None = None, image_column: str | None = None,
                 label_column: str | None = None, meta: dict[str, Any] | None = None) -> None:
        self.loader = loader
        self.transform = transform
        self.name = name or f"DataLoader({type(getattr(loader, 'dataset', None)).__name__})"
        self.dataset_id = dataset_id
        self.image_column, self.label_column = image_column, label_column
        self.meta = dict(meta or {})
        self._classes = list(classes) if classes is not None else None
        self._targets: np.ndarray | None = None
        self._content: str | None = None
        self._n: int | None = None
        base = getattr(loader, "dataset", None)
        if classes is None and base is not None and getattr(base, "classes", None) is not None:
            self._classes = [str(c) for c in base.classes]
        self._warn_drop_last()
        if isinstance(getattr(loader, "sampler", None), RandomSampler):
            warnings.warn(f"{self.name}: the DataLoader shuffles, so its order (and its content fingerprint) "
                          "differs on every pass: cached features are never reused. Use shuffle=False for "
                          "feature extraction.", UserWarning, stacklevel=3)

    def _warn_drop_last(self) -> None:
        loader = self.loader
        if not getattr(loader, "drop_last", False):
            return
        bs = getattr(loader, "batch_size", None)
        try:
            total = len(loader.sampler)
        except TypeError:
            total = None
        dropped = total % bs if (bs and total is not None) else None
        if dropped:
            warnings.warn(f"{self.name}: DataLoader(drop_last=True): {dropped} of {total} samples dropped (the last "
                          f"incomplete batch of batch_size={bs}); they get no features. Pass drop_last=False to use "
                          "every sample.", UserWarning, stacklevel=4)
        elif dropped is None:
            warnings.warn(f"{self.name}: DataLoader(drop_last=True): the last incomplete batch, if any, is dropped "
                          "(samples dropped get no features).", UserWarning, stacklevel=4)

    # ------------------------------------------------------------------ batches
    def _split_batch(self, batch: Any, where: str) -> tuple[Any, Any]:
        if isinstance(batch, dict):
            x, y = item_pair(batch, where, self.image_column, self.label_column)
        elif isinstance(batch, (tuple, list)) and len(batch) >= 2:
            x, y = batch[0], batch[1]
        else:
            raise InputValueError(f"{where}: labels missing: a batch of the DataLoader is a {type(batch).__name__}; "
                                  "expected (images, labels) batches.")
        if isinstance(x, (list, tuple)):  # a custom collate returning a list of images
            if self.transform is not None and not hasattr(self.transform, "batch"):
                return torch.stack([self.transform(im) for im in x]), y
            x = torch.stack([to_float_tensor(im, where) for im in x])
        if not torch.is_tensor(x):
            raise InputValueError(f"{where}: expected a batch of images as a tensor [B, C, H, W]; got "
                                  f"{type(x).__name__}.")
        if x.ndim == 3:
            x = x.unsqueeze(1)
        if x.ndim != 4:
            raise ShapeError(f"{where}: expected image batches [B, C, H, W]; got shape {tuple(x.shape)}.")
        return x, y

    def _labels(self, y: Any, where: str) -> np.ndarray:
        if torch.is_tensor(y):
            y = y.detach().cpu().numpy()
        arr = np.asarray(y)
        if arr.ndim != 1:
            raise InputValueError(f"{where}: labels must be one class index per sample; got shape {arr.shape}.")
        if arr.dtype.kind not in "iu":
            arr, _ = encode_labels(arr, None, where)
        return arr.astype(np.int64)

    def raw_batches(self) -> Iterator[tuple[Any, np.ndarray]]:
        """``(images [B, C, H, W] as given, labels int64 [B])`` for every batch of the loader."""
        for b, batch in enumerate(self.loader):
            where = f"{self.name} batch {b}"
            x, y = self._split_batch(batch, where)
            yv = self._labels(y, where)
            if len(yv) != len(x):
                raise ShapeError(f"{where}: {len(x)} images but {len(yv)} labels.")
            yield x, yv

    def iter_batches(self) -> Iterator[tuple[Any, Any]]:
        """``(model input [B, ...], labels int64 tensor [B])`` per batch, nctransfer's transform applied."""
        for x, y in self.raw_batches():
            t = self.transform
            if t is None:
                x = x.float() / 255.0 if x.dtype == torch.uint8 else x
            elif hasattr(t, "batch"):
                x = t.batch(x if torch.is_floating_point(x) else x.float() / 255.0)
            else:
                x = torch.stack([t(im) for im in x])
            yield x, torch.as_tensor(y)

    def _scan(self) -> None:
        if self._targets is not None:
            return
        h = hashlib.sha1(b"dataloader|")
        ys = []
        for x, y in self.raw_batches():
            ys.append(y)
            if self.dataset_id is None:
                update_with_image(h, x)
        self._targets = np.concatenate(ys) if ys else np.zeros(0, dtype=np.int64)
        h.update(self._targets.tobytes())
        self._content = h.hexdigest()[:20] if self.dataset_id is None else f"id:{self.dataset_id}"
        self._n = len(self._targets)

    # ------------------------------------------------------------------ dataset protocol
    @property
    def targets(self) -> np.ndarray:
        self._scan()
        return self._targets  # type: ignore[return-value]

    @property
    def classes(self) -> list[str]:
        if self._classes is not None:
            return self._classes
        t = self.targets
        return [str(i) for i in range(int(t.max()) + 1 if len(t) else 0)]

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def class_counts(self) -> np.ndarray:
        return np.bincount(self.targets, minlength=len(self.classes))

    def __len__(self) -> int:
        if self._n is None:
            self._scan()
        return int(self._n)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> Any:
        raise InputValueError(f"{self.name}: a DataLoader is used as given, batch by batch; it has no random access "
                              "(pass its dataset instead to index, split or subsample it).")

    def subset(self, indices: Any, **meta: Any) -> Any:
        raise InputValueError(f"{self.name}: a DataLoader is used as given and cannot be subsampled or split; pass "
                              "per_class=None, and give explicit train= and test= loaders (or subsample the dataset "
                              "it wraps).")

    def with_transform(self, transform: Any) -> "LoaderDataset":
        out = object.__new__(LoaderDataset)
        out.__dict__.update(self.__dict__)
        out.transform = transform
        return out

    def _content_id(self) -> str:
        self._scan()
        return self._content  # type: ignore[return-value]

    def fingerprint(self) -> str:
        """Content fingerprint (see :mod:`nctransfer.data.fingerprint`) and nctransfer's transform."""
        blob = json.dumps({"name": "dataloader", "content": self._content_id(),
                           "transform": transform_key(self.transform)}, sort_keys=True)
        return hashlib.sha1(blob.encode()).hexdigest()[:20]

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "n": len(self), "n_classes": len(self.classes), "classes": list(self.classes),
                "transform": transform_key(self.transform), "kind": "dataloader", **self.meta}

    def __repr__(self) -> str:
        return f"LoaderDataset(name={self.name!r}, n={self._n if self._n is not None else '?'})"


def stream_loader(stream: Any, batch_size: int = 64) -> Any:
    """A ``DataLoader`` over an iterable stream yielding ``(image, label)`` (or dicts with image/label keys)."""
    return DataLoader(stream, batch_size=batch_size)
