"""The user's own data in every common form: map-style datasets, DataLoaders, Hugging Face datasets, streams.

:func:`nctransfer.data.load_dataset` turns each of them into a dataset with ``targets``, ``classes``,
``transform`` and a content ``fingerprint()`` (:mod:`nctransfer.data.fingerprint`):

- a map-style ``torch.utils.data.Dataset`` yielding ``(image, label)``, the image a ``PIL.Image.Image``, a
  ``uint8`` or float tensor ``[C, H, W]`` or a numpy array (labels from ``.targets`` / ``.labels`` when present,
  otherwise read from the items in one pass);
- a ``torch.utils.data.DataLoader``: used as given (its batches, its sampler, its collate function), labels read
  from the batches (:class:`LoaderDataset`);
- a Hugging Face ``datasets.Dataset`` (:class:`HFImageSource`): the image column and the label column are found
  (a ``datasets.Image`` / ``datasets.ClassLabel`` feature, else a column named ``image``/``img``/... and
  ``label``/``labels``/...) or named by the user; ``ClassLabel`` names are kept as the class names;
- an iterable stream (``torch.utils.data.IterableDataset``, a streaming HF dataset): only with an explicit
  ``dataset_id`` (its content cannot be fingerprinted without consuming it).
"""

from __future__ import annotations

import hashlib
import json
import warnings
from typing import Any, Iterator, Sequence

import numpy as np

from nctransfer.data.fingerprint import update_with_image
from nctransfer.data.transforms import transform_key
from nctransfer.exceptions import InputValueError, ShapeError

IMAGE_COLUMNS = ("image", "img", "images", "pixel_values", "pixels", "picture", "photo")
LABEL_COLUMNS = ("label", "labels", "target", "targets", "class", "classes", "y", "fine_label", "coarse_label")


# ------------------------------------------------------------------------------------------------ detection
def is_hf_dataset(obj: Any) -> bool:
    """A Hugging Face ``datasets.Dataset`` (map-style, with ``features`` and ``column_names``)."""
    mod = type(obj).__module__ or ""
    return mod.startswith("datasets.") and hasattr(obj, "column_names") and hasattr(obj, "features") \
        and hasattr(obj, "__getitem__") and not is_stream(obj)


def is_dataloader(obj: Any) -> bool:
    try:
        from torch.utils.data import DataLoader
    except ImportError:  # pragma: no cover
        return False
    return isinstance(obj, DataLoader)


def is_stream(obj: Any) -> bool:
    """An iterable dataset without random access: ``torch.utils.data.IterableDataset`` or a streaming HF dataset."""
    try:
        from torch.utils.data import IterableDataset

        if isinstance(obj, IterableDataset):
            return True
    except ImportError:  # pragma: no cover
        pass
    return type(obj).__name__ == "IterableDataset" and (type(obj).__module__ or "").startswith("datasets.")


def is_map_dataset(obj: Any) -> bool:
    return hasattr(obj, "__getitem__") and hasattr(obj, "__len__") and not isinstance(obj, (str, bytes, dict))


def stream_error(obj: Any, where: str = "load_dataset") -> InputValueError:
    return InputValueError(
        f"{where}: {type(obj).__name__} is an iterable dataset (a stream): it has no length and no random access, "
        "so nctransfer cannot fingerprint its content for the feature cache. Pass dataset_id='<a name that changes "
        "whenever the stream's content changes>' (e.g. dataset_id='my-stream-2024-06'), or give a map-style "
        "Dataset / a DataLoader instead.")


# ------------------------------------------------------------------------------------------------ items
def item_pair(item: Any, where: str, image_column: str | None = None,
              label_column: str | None = None) -> tuple[Any, Any]:
    """``(image, label)`` of one dataset item: a pair / longer tuple (first two entries) or a dict with an image
    and a label key.

    Raises:
        InputValueError: the item carries no label (``where`` names the dataset and index).
    """
    if isinstance(item, dict):
        ic = image_column or next((k for k in IMAGE_COLUMNS if k in item), None)
        lc = label_column or next((k for k in LABEL_COLUMNS if k in item), None)
        if ic is None or ic not in item or lc is None or lc not in item:
            raise InputValueError(
                f"{where}: labels missing or image missing: the item is a dict with keys {sorted(item)}; expected "
                f"an image key ({', '.join(IMAGE_COLUMNS)}) and a label key ({', '.join(LABEL_COLUMNS)}), or name "
                "them with image_column= / label_column=.")
        return item[ic], item[lc]
    if isinstance(item, (tuple, list)) and len(item) >= 2:
        return item[0], item[1]
    raise InputValueError(
        f"{where}: labels missing: expected (image, label) pairs; the item is "
        + (f"a {len(item)}-tuple" if isinstance(item, (tuple, list)) else f"a {type(item).__name__}")
        + ". Return (image, label) from __getitem__, or pass the labels with load_dataset((images, labels)).")


def label_value(lab: Any, where: str) -> Any:
    """A scalar label (int, numpy integer, 0-d or 1-element tensor, string)."""
    try:
        import torch

        if torch.is_tensor(lab):
            if lab.numel() != 1:
                raise InputValueError(f"{where}: a label must be one class index; got a tensor of shape "
                                      f"{tuple(lab.shape)} (one-hot labels: use argmax).")
            return lab.item()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(lab, np.ndarray):
        if lab.size != 1:
            raise InputValueError(f"{where}: a label must be one class index; got an array of shape {lab.shape}.")
        return lab.reshape(()).item()
    if lab is None:
        raise InputValueError(f"{where}: labels missing: the label is None.")
    return lab


def encode_labels(raw: Sequence[Any], classes: Sequence[str] | None, where: str) -> tuple[np.ndarray, list[str]]:
    """Labels -> int64 codes ``0..K-1`` and class names. Non-negative integers are kept as given (class names
    ``"0"..``); other labels (strings, ...) are encoded in sorted order."""
    arr = np.asarray(raw)
    if arr.ndim != 1:
        raise InputValueError(f"{where}: labels must be one value per sample; got shape {arr.shape}.")
    if arr.dtype.kind in "iu" or (arr.dtype.kind == "f" and len(arr) and np.all(np.isfinite(arr))
                                   and np.all(arr == np.round(arr))):
        codes = arr.astype(np.int64)
        if len(codes) and codes.min() < 0:
            raise InputValueError(f"{where}: integer labels must be >= 0; got {int(codes.min())}.")
        k = int(codes.max()) + 1 if len(codes) else 0
        names = list(classes) if classes is not None else [str(i) for i in range(k)]
        if len(names) < k:
            raise InputValueError(f"{where}: labels go up to {k - 1} but only {len(names)} class names were given.")
        return codes, [str(c) for c in names]
    if arr.dtype.kind == "f":
        raise InputValueError(f"{where}: labels must be class indices or names; got non-integer floats.")
    values = sorted({str(v) for v in arr.tolist()})
    lookup = {v: i for i, v in enumerate(values)}
    codes = np.asarray([lookup[str(v)] for v in arr.tolist()], dtype=np.int64)
    return codes, list(classes) if classes is not None else values


def read_labels(base: Any, where: str, hashes: dict[Any, str] | None = None) -> np.ndarray:
    """Raw labels of every item of a map-style dataset, in one pass; the decoded image of each item is hashed into
    ``hashes[i]`` on the way (so that a later content fingerprint needs no second pass)."""
    from tqdm.auto import tqdm

    out = []
    n = len(base)
    for i in tqdm(range(n), desc=f"reading labels of {where}", unit="img", leave=False, disable=n < 2000):
        img, lab = item_pair(base[i], f"{where}[{i}]")
        _check_image(img, f"{where}[{i}]")
        if hashes is not None:
            h = hashlib.sha1()
            update_with_image(h, img)
            hashes[("img", i)] = h.hexdigest()
        out.append(label_value(lab, f"{where}[{i}]"))
    return np.asarray(out)


def _check_image(img: Any, where: str) -> None:
    """Raise a clear error when a dataset yields something that is not an image."""
    import torch

    from nctransfer.data.transforms import is_pil_image

    if is_pil_image(img):
        return
    if torch.is_tensor(img) or isinstance(img, np.ndarray):
        if img.ndim not in (2, 3):
            raise ShapeError(f"{where}: expected one image [H, W], [H, W, C] or [C, H, W]; got shape "
                             f"{tuple(img.shape)}.")
        return
    raise InputValueError(f"{where}: expected an image (PIL.Image.Image, numpy array [H, W] / [H, W, C] or tensor "
                          f"[C, H, W]); got {type(img).__name__}"
                          + (f" {img!r}" if isinstance(img, (str, int, float)) else "") + ".")


# ------------------------------------------------------------------------------------------------ Hugging Face
def hf_columns(ds: Any, image_column: str | None, label_column: str | None) -> tuple[str, str, list[str] | None]:
    """``(image column, label column, ClassLabel names or None)`` of a Hugging Face dataset."""
    cols = list(ds.column_names)
    feats = ds.features

    def kind(c: str) -> str:
        return type(feats[c]).__name__ if c in feats else ""

    if image_column is not None and image_column not in cols:
        raise InputValueError(f"image_column: {image_column!r} is not a column of the dataset; columns: {cols}.")
    if label_column is not None and label_column not in cols:
        raise InputValueError(f"label_column: {label_column!r} is not a column of the dataset; columns: {cols}.")
    ic = image_column or next((c for c in cols if kind(c) == "Image"), None) or next(
        (c for c in IMAGE_COLUMNS if c in cols), None)
    lc = label_column or next((c for c in cols if kind(c) == "ClassLabel"), None) or next(
        (c for c in LABEL_COLUMNS if c in cols), None)
    if ic is None:
        raise InputValueError(f"Hugging Face dataset: no image column found among {cols} (no datasets.Image feature "
                              f"and none named {', '.join(IMAGE_COLUMNS)}); name it with image_column=.")
    if lc is None:
        raise InputValueError(f"Hugging Face dataset: labels missing: no label column found among {cols} (no "
                              f"ClassLabel feature and none named {', '.join(LABEL_COLUMNS)}); name it with "
                              "label_column=.")
    names = list(feats[lc].names) if kind(lc) == "ClassLabel" else None
    return ic, lc, names


class HFImageSource:
    """Map-style view of a Hugging Face ``datasets.Dataset``: ``src[i] -> (image, label)``.

    Attributes:
        dataset: the HF dataset; image_column, label_column: the columns used; names: ``ClassLabel`` names or None.
    """

    def __init__(self, dataset: Any, image_column: str | None = None, label_column: str | None = None) -> None:
        self.dataset = dataset
        self.image_column, self.label_column, self.names = hf_columns(dataset, image_column, label_column)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> tuple[Any, Any]:
        row = self.dataset[int(i)]
        img = row[self.image_column]
        if isinstance(img, list):  # an image stored as nested lists (Sequence feature)
            img = np.asarray(img)
            if img.dtype.kind == "i" and img.size and img.min() >= 0 and img.max() <= 255:
                img = img.astype(np.uint8)
        return img, row[self.label_column]

    def raw_labels(self) -> np.ndarray:
        return np.asarray(self.dataset[self.label_column])


# ------------------------------------------------------------------------------------------------ DataLoader
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
        try:
            from torch.utils.data import RandomSampler

            if isinstance(getattr(loader, "sampler", None), RandomSampler):
                warnings.warn(f"{self.name}: the DataLoader shuffles, so its order (and its content fingerprint) "
                              "differs on every pass: cached features are never reused. Use shuffle=False for "
                              "feature extraction.", UserWarning, stacklevel=3)
        except ImportError:  # pragma: no cover
            pass

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
        import torch

        if isinstance(batch, dict):
            x, y = item_pair(batch, where, self.image_column, self.label_column)
        elif isinstance(batch, (tuple, list)) and len(batch) >= 2:
            x, y = batch[0], batch[1]
        else:
            raise InputValueError(f"{where}: labels missing: a batch of the DataLoader is a {type(batch).__name__}; "
                                  "expected (images, labels) batches.")
        if isinstance(x, (list, tuple)):  # a custom collate returning a list of images
            from nctransfer.data.transforms import to_float_tensor

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
        import torch

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
        import torch

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
    from torch.utils.data import DataLoader

    return DataLoader(stream, batch_size=batch_size)


__all__ = [
    "HFImageSource", "IMAGE_COLUMNS", "LABEL_COLUMNS", "LoaderDataset", "encode_labels", "hf_columns",
    "is_dataloader", "is_hf_dataset", "is_map_dataset", "is_stream", "item_pair", "label_value", "read_labels",
    "stream_error", "stream_loader",
]
