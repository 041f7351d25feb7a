"""Dataset checks used by the trainer: labels of a map-style dataset, class count, batch-size sanity."""

from __future__ import annotations

from typing import Any

import numpy as np

from nctransfer.exceptions import InputValueError


def dataset_targets(dataset: Any, name: str = "train_data") -> np.ndarray:
    """Integer labels ``[N]`` of a map-style dataset returning ``(image, label)``.

    Read from ``targets`` / ``labels`` / ``y`` when present (``torch.utils.data.Subset`` of such a dataset is
    followed), otherwise by indexing every item once.
    """
    import torch
    from torch.utils.data import Subset

    if isinstance(dataset, Subset):
        parent = dataset_targets(dataset.dataset, name)
        return parent[np.asarray(dataset.indices, dtype=np.int64)]
    for attr in ("targets", "labels", "y"):
        t = getattr(dataset, attr, None)
        if t is not None and not callable(t):
            arr = t.detach().cpu().numpy() if torch.is_tensor(t) else np.asarray(t)
            if arr.ndim == 1 and len(arr) == len(dataset):
                return _as_int_labels(arr, name)
    try:
        n = len(dataset)
    except TypeError as exc:
        raise InputValueError(
            f"{name}: expected a map-style dataset with len(); got {type(dataset).__name__}."
        ) from exc
    labels = []
    for i in range(n):
        item = dataset[i]
        if not isinstance(item, (tuple, list)) or len(item) < 2:
            raise InputValueError(f"{name}: items must be (image, label) pairs; item {i} is {type(item).__name__}.")
        lab = item[1]
        labels.append(lab.item() if torch.is_tensor(lab) else lab)
    return _as_int_labels(np.asarray(labels), name)


def _as_int_labels(arr: np.ndarray, name: str) -> np.ndarray:
    if not np.issubdtype(arr.dtype, np.integer):
        if np.issubdtype(arr.dtype, np.floating) and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            raise InputValueError(f"{name}: labels must be integers 0..K-1; got dtype {arr.dtype}.")
    arr = arr.astype(np.int64)
    if arr.size and arr.min() < 0:
        raise InputValueError(f"{name}: labels must be integers 0..K-1; got a negative label {int(arr.min())}.")
    return arr


def check_training_data(train_labels: np.ndarray, test_labels: np.ndarray, batch_size: int,
                        num_classes: int | None = None) -> int:
    """Validate the downstream data; return the number of classes ``K`` (``max label + 1``).

    Raises:
        InputValueError: fewer than 2 classes in the training data, fewer training samples than the batch size,
            an empty test set, or test labels outside the training label range.
    """
    n = int(len(train_labels))
    present = np.unique(train_labels)
    if n == 0:
        raise InputValueError("train_data: the training set is empty.")
    if len(present) < 2:
        raise InputValueError(
            f"train_data: fine-tuning a classifier needs at least 2 classes; the training set has {len(present)} "
            f"(label {present.tolist()}) in {n} samples."
        )
    if n < batch_size:
        raise InputValueError(
            f"batch_size: the training set has {n} samples, fewer than batch_size={batch_size}; pass a batch size "
            f"<= {n} (e.g. --batch-size {max(2, min(n, 32))}) or use more training data."
        )
    if len(test_labels) == 0:
        raise InputValueError("test_data: the test set is empty.")
    k = int(max(present.max(), test_labels.max())) + 1
    if num_classes is not None and k > num_classes:
        raise InputValueError(f"labels go up to {k - 1} but the model has num_classes={num_classes}.")
    return k if num_classes is None else int(num_classes)
