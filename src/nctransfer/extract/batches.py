"""The input side of :func:`~nctransfer.extract.extract`: batches of samples ``[lo, hi)`` for consecutive shards
(map-style datasets indexed through a DataLoader; DataLoaders, Hugging Face datasets and streams consumed as given),
the collation of raw ``(image, label)`` items, the dataset's cache identity and the autocast context.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from nctransfer.data import inputs as I
from nctransfer.data import load_dataset
from nctransfer.data.inputs import item_pair, label_value
from nctransfer.data.transforms import to_float_tensor
from nctransfer.exceptions import InputValueError


def _collate(items: list[Any]) -> tuple[Any, Any]:
    """``(image, label)`` items of a raw dataset -> ``(x [B, ...], y [B])``: tensors stacked as given, PIL images
    and numpy arrays converted to float ``[C, H, W]`` in ``[0, 1]`` first."""
    xs, ys = [], []
    for k, item in enumerate(items):
        img, lab = item_pair(item, f"dataset item {k} of a batch")
        xs.append(img if torch.is_tensor(img) else to_float_tensor(img, f"dataset item {k} of a batch"))
        ys.append(label_value(lab, f"dataset item {k} of a batch"))
    return torch.stack(xs), torch.as_tensor(ys)


def _batches(dataset: Any, start: int, stop: int, batch_size: int, num_workers: int) -> Iterator[tuple[Any, Any]]:
    if hasattr(dataset, "get_batch"):
        for b in range(start, stop, batch_size):
            yield dataset.get_batch(np.arange(b, min(b + batch_size, stop)))
        return
    loader = DataLoader(Subset(dataset, range(start, stop)), batch_size=batch_size, shuffle=False,
                        num_workers=num_workers, collate_fn=_collate)
    for x, y in loader:
        yield x, torch.as_tensor(y)


class _BatchSource:
    """Batches of samples ``[lo, hi)`` for consecutive shards. Map-style datasets are indexed; a dataset that can
    only be iterated (``iter_batches()``: a DataLoader used as given) is consumed once, its batches cut at shard
    boundaries (eval mode: cutting a batch does not change any feature)."""

    def __init__(self, dataset: Any, batch_size: int, num_workers: int) -> None:
        self.dataset = dataset
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.streaming = hasattr(dataset, "iter_batches") and not hasattr(dataset, "get_batch")
        self._it: Iterator[tuple[Any, Any]] | None = None
        self._pos = 0
        self._carry: tuple[Any, Any] | None = None

    def _next(self) -> tuple[Any, Any] | None:
        if self._carry is not None:
            out, self._carry = self._carry, None
            return out
        if self._it is None:
            self._it = iter(self.dataset.iter_batches())
        return next(self._it, None)

    def take(self, lo: int, hi: int) -> Iterator[tuple[Any, Any]]:
        if not self.streaming:
            yield from _batches(self.dataset, lo, hi, self.batch_size, self.num_workers)
            return
        while self._pos < hi:
            nxt = self._next()
            if nxt is None:
                raise InputValueError(f"the DataLoader yielded {self._pos} samples, fewer than the {hi} expected (its "
                                      "length changed between passes?).")
            x, y = nxt
            b0, b1 = self._pos, self._pos + len(y)
            if b1 > hi:  # keep the rest for the next shard
                self._carry = (x[hi - b0:], y[hi - b0:])
                x, y, b1 = x[:hi - b0], y[:hi - b0], hi
            self._pos = b1
            if b1 <= lo:  # resuming: skip samples of completed shards
                continue
            if b0 < lo:
                x, y = x[lo - b0:], y[lo - b0:]
            yield x, y


def _as_extract_input(dataset: Any, dataset_id: str | None, cache: bool, batch_size: int) -> Any:
    """DataLoaders, Hugging Face datasets and streams -> datasets :func:`extract` can iterate (no transform:
    images are fed as given)."""
    if I.is_stream(dataset):
        if cache and dataset_id is None:
            raise I.stream_error(dataset, "extract")
        return I.LoaderDataset(I.stream_loader(dataset, batch_size), dataset_id=dataset_id or "uncached-stream")
    if I.is_dataloader(dataset):
        return I.LoaderDataset(dataset, dataset_id=dataset_id)
    if I.is_hf_dataset(dataset) or (type(dataset).__name__ == "DatasetDict"):
        return load_dataset(dataset, None if I.is_hf_dataset(dataset) else "train", dataset_id=dataset_id)
    return dataset


def _dataset_id(dataset: Any, dataset_id: str | None) -> str | None:
    if dataset_id is not None:
        return str(dataset_id)
    fp = getattr(dataset, "fingerprint", None)
    return fp() if callable(fp) else None


def _model_name(model: Any) -> str:
    info = getattr(model, "nctransfer_info", None)
    return info.name if info is not None else type(model).__name__


def _autocast(device: Any, dtype: str | None) -> Any:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=getattr(torch, dtype))
