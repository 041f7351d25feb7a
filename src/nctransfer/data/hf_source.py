"""A Hugging Face ``datasets.Dataset`` as a map-style source of ``(image, label)`` pairs: the image column and the
label column are found (a ``datasets.Image`` / ``datasets.ClassLabel`` feature, else a column with a common name)
or named by the user; ``ClassLabel`` names are kept as the class names."""

from __future__ import annotations

from typing import Any

import numpy as np

from nctransfer.data.items import IMAGE_COLUMNS, LABEL_COLUMNS
from nctransfer.exceptions import InputValueError


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
