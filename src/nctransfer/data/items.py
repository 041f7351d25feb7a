"""One item of the user's own dataset: its ``(image, label)`` pair (a tuple, or a dict with an image and a label
key), its label as one class index, the labels of a whole map-style dataset read in one pass, and their encoding as
class indices ``0..K-1`` with class names."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from nctransfer.data.fingerprint import image_digest
from nctransfer.data.images import is_pil_image
from nctransfer.exceptions import InputValueError, ShapeError

IMAGE_COLUMNS = ("image", "img", "images", "pixel_values", "pixels", "picture", "photo")
LABEL_COLUMNS = ("label", "labels", "target", "targets", "class", "classes", "y", "fine_label", "coarse_label")


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
    if torch.is_tensor(lab):
        if lab.numel() != 1:
            raise InputValueError(f"{where}: a label must be one class index; got a tensor of shape "
                                  f"{tuple(lab.shape)} (one-hot labels: use argmax).")
        return lab.item()
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
    out = []
    n = len(base)
    for i in tqdm(range(n), desc=f"reading labels of {where}", unit="img", leave=False, disable=n < 2000):
        at = f"{where}[{i}]"
        img, lab = item_pair(base[i], at)
        _check_image(img, at)
        if hashes is not None:
            hashes[("img", i)] = image_digest(img)
        out.append(label_value(lab, at))
    return np.asarray(out)


def _check_image(img: Any, where: str) -> None:
    """Raise a clear error when a dataset yields something that is not an image."""
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

