"""Offline source/target datasets for pre-training studies (issue 7, item 3).

A dataset spec is ``NAME[:CLASSES]``:

- ``NAME``: ``fashion-mnist`` (Debian package ``dataset-fashion-mnist``, 60000 train / 10000 test 28x28 images;
  the official test split is the test split) or ``digits`` (scikit-learn's 1797 8x8 digits in ``[0, 16]``,
  rescaled to ``[0, 1]`` and resized to the study's image size, 28 px by default, with bilinear interpolation;
  digits have no official split, so a seeded stratified half is held out as the test split).
  Other names go through :func:`nctransfer.data.load_dataset` when it supports them (ImageFolder directories,
  ``torchvision:<Name>``), converted to grayscale-or-RGB tensors of the study's image size.
- ``CLASSES``: original class labels to keep, as ranges and lists: ``0-4``, ``5-9``, ``0,2,4``, ``0-2,7``.

Typical studies: within one dataset, split by classes (``fashion-mnist:0-4`` -> ``fashion-mnist:5-9``: the target
classes are never seen in pre-training), and across datasets (``fashion-mnist:0-4`` -> ``digits``).
Per-class subsampling (``train_per_class``, ``test_per_class``) is balanced and seeded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from nctransfer.exceptions import InputValueError, NotFoundError

#: Datasets available with no download.
OFFLINE_DATASETS = ("fashion-mnist", "digits")
_ALIASES = {"fashion_mnist": "fashion-mnist", "fashionmnist": "fashion-mnist", "fmnist": "fashion-mnist",
            "sklearn-digits": "digits", "sklearn_digits": "digits"}
_CLASSES_RX = re.compile(r"^\s*\d+\s*(-\s*\d+\s*)?(,\s*\d+\s*(-\s*\d+\s*)?)*$")


@dataclass
class StudyData:
    """Images of one study dataset in memory.

    Attributes:
        spec: the spec string it was loaded from.
        X_train, X_test: float32 tensors ``[N, C, S, S]`` in ``[0, 1]``.
        y_train, y_test: int64 arrays of the *original* class labels.
        classes: the kept class labels (sorted).
        class_names: human-readable names when known.
    """

    spec: str
    X_train: torch.Tensor
    y_train: np.ndarray
    X_test: torch.Tensor
    y_test: np.ndarray
    classes: list[int]
    class_names: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """Sizes and classes (JSON friendly)."""
        return {"spec": self.spec, "n_train": int(len(self.y_train)), "n_test": int(len(self.y_test)),
                "classes": list(self.classes), "class_names": list(self.class_names),
                "image_shape": list(self.X_train.shape[1:])}


def parse_classes(text: str, *, name: str = "classes") -> list[int]:
    """``"0-4"`` -> ``[0, 1, 2, 3, 4]``; ``"0,2,5-6"`` -> ``[0, 2, 5, 6]``.

    Raises:
        InputValueError: malformed text or a descending range.
    """
    if not _CLASSES_RX.match(text or ""):
        raise InputValueError(f"{name}: expected class labels as ranges and lists such as '0-4' or '0,2,5-6'; "
                              f"got {text!r}.")
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        a, b = int(lo), int(hi) if hi.strip() else int(lo)
        if b < a:
            raise InputValueError(f"{name}: range {part.strip()!r} is descending.")
        out.extend(range(a, b + 1))
    return sorted(set(out))


def parse_spec(spec: str) -> tuple[str, list[int] | None]:
    """Split ``NAME[:CLASSES]`` into the dataset name and the class list (``None`` = all classes)."""
    if not isinstance(spec, str) or not spec.strip():
        raise InputValueError(f"dataset spec must be a string such as 'fashion-mnist:0-4'; got {spec!r}.")
    spec = spec.strip()
    base, sep, tail = spec.rpartition(":")
    if sep and _CLASSES_RX.match(tail):
        name, classes = base, parse_classes(tail, name=f"dataset {spec!r}")
    else:
        name, classes = spec, None
    low = name.lower()
    return _ALIASES.get(low, low) if _ALIASES.get(low, low) in OFFLINE_DATASETS else name, classes


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    out = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                                          antialias=size < x.shape[-1])
    return out.clamp_(0.0, 1.0)


def _keep(y: np.ndarray, classes: list[int] | None, spec: str, available: list[int]) -> np.ndarray:
    if classes is None:
        return np.ones(len(y), dtype=bool)
    missing = sorted(set(classes) - set(available))
    if missing:
        raise InputValueError(f"dataset {spec!r}: classes {missing} do not exist; available classes: {available}.")
    return np.isin(y, classes)


def balanced_subsample(y: np.ndarray, per_class: int | None, seed: int) -> np.ndarray:
    """Sorted indices of at most ``per_class`` samples of each class, drawn without replacement (seeded)."""
    if per_class is None:
        return np.arange(len(y))
    if isinstance(per_class, bool) or not isinstance(per_class, (int, np.integer)) or per_class < 1:
        raise InputValueError(f"per_class must be a positive integer or None; got {per_class!r}.")
    rng = np.random.default_rng(seed)
    idx = [rng.permutation(np.flatnonzero(y == c))[:per_class] for c in np.unique(y)]
    return np.sort(np.concatenate(idx))


def load_study_data(
    spec: str,
    *,
    image_size: int = 28,
    train_per_class: int | None = None,
    test_per_class: int | None = None,
    seed: int = 0,
    root: str | None = None,
) -> StudyData:
    """Load a study dataset (see the module docstring for ``spec``).

    Args:
        spec: ``NAME[:CLASSES]``, e.g. ``"fashion-mnist:0-4"`` or ``"digits"``.
        image_size: side of the returned square images.
        train_per_class, test_per_class: balanced seeded subsample sizes (``None`` = all).
        seed: seed of the subsampling and of the digits train/test split.
        root: directory of the Fashion-MNIST IDX files (default: the Debian package's location).

    Returns:
        :class:`StudyData`.

    Raises:
        NotFoundError: unknown dataset or files missing. InputValueError: bad classes or sizes.
    """
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 4:
        raise InputValueError(f"image_size must be an integer >= 4; got {image_size!r}.")
    name, classes = parse_spec(spec)
    names: list[str] = []
    if name == "fashion-mnist":
        from nctransfer.data.arrays import FASHION_MNIST_CLASSES, load_fashion_mnist_arrays

        Xtr, ytr = load_fashion_mnist_arrays("train", root)
        Xte, yte = load_fashion_mnist_arrays("test", root)
        available = list(range(10))
        names = list(FASHION_MNIST_CLASSES)
        Xtr_t = torch.from_numpy(np.ascontiguousarray(Xtr))[:, None].float().div_(255.0)
        Xte_t = torch.from_numpy(np.ascontiguousarray(Xte))[:, None].float().div_(255.0)
    elif name == "digits":
        from sklearn.model_selection import train_test_split

        from nctransfer.data.arrays import load_digits_arrays

        X, y = load_digits_arrays()
        available = list(range(10))
        names = [str(i) for i in range(10)]
        idx_tr, idx_te = train_test_split(np.arange(len(y)), test_size=0.5, random_state=seed, stratify=y)
        Xf = torch.from_numpy(np.asarray(X, dtype=np.float32) / 16.0)[:, None]
        Xtr_t, ytr, Xte_t, yte = Xf[idx_tr], y[idx_tr], Xf[idx_te], y[idx_te]
    else:
        Xtr_t, ytr, Xte_t, yte, available, names = _generic(name, image_size, seed)
    keep_tr = _keep(ytr, classes, spec, available)
    keep_te = _keep(yte, classes, spec, available)
    ytr, yte = np.asarray(ytr)[keep_tr], np.asarray(yte)[keep_te]
    Xtr_t, Xte_t = Xtr_t[torch.from_numpy(keep_tr)], Xte_t[torch.from_numpy(keep_te)]
    sel_tr = balanced_subsample(ytr, train_per_class, seed)
    sel_te = balanced_subsample(yte, test_per_class, seed + 1)
    Xtr_t = _resize(Xtr_t[torch.from_numpy(sel_tr)], image_size).contiguous()
    Xte_t = _resize(Xte_t[torch.from_numpy(sel_te)], image_size).contiguous()
    kept = sorted(int(c) for c in np.unique(ytr[sel_tr]))
    if len(kept) < 2:
        raise InputValueError(f"dataset {spec!r}: at least 2 classes are needed; got {kept}.")
    class_names = [names[c] if c < len(names) else str(c) for c in kept] if names else [str(c) for c in kept]
    return StudyData(spec, Xtr_t, ytr[sel_tr].astype(np.int64), Xte_t, yte[sel_te].astype(np.int64), kept,
                     class_names)


def _generic(name: str, image_size: int, seed: int) -> tuple[Any, ...]:
    """Any dataset ``nctransfer.data.load_dataset`` knows, materialised as tensors (small datasets only)."""
    try:
        from nctransfer.data import load_dataset  # type: ignore[attr-defined]
    except ImportError:
        load_dataset = None
    if load_dataset is None:
        raise NotFoundError(f"unknown study dataset {name!r}; offline datasets: {list(OFFLINE_DATASETS)}.")
    import torchvision.transforms as T

    tf = T.Compose([T.Resize(image_size), T.CenterCrop(image_size), T.ToTensor()])
    out = []
    for split in ("train", "test"):
        ds = load_dataset(name, split=split, transform=tf)
        xs, ys = [], []
        for x, y in ds:
            xs.append(x)
            ys.append(int(y))
        out.append((torch.stack(xs), np.asarray(ys, dtype=np.int64)))
    (Xtr, ytr), (Xte, yte) = out
    available = sorted(set(ytr.tolist()))
    names = list(getattr(getattr(ds, "classes", None), "__iter__", lambda: [])()) if hasattr(ds, "classes") else []
    return Xtr, ytr, Xte, yte, available, [str(n) for n in names]
