"""Source/target datasets for pre-training studies, offline.

A dataset spec is ``NAME[:CLASSES]``:

- ``NAME``: anything :func:`nctransfer.data.load_dataset` accepts. Offline: ``fashion-mnist`` (Debian package
  ``dataset-fashion-mnist``; the official 60000-image training set is the training split, the official 10000-image
  test set the test split) and ``digits`` (scikit-learn's 1797 8x8 digits in ``[0, 16]``, rescaled to ``[0, 1]``;
  a stratified seeded 20% is the test split). Also an ImageFolder directory or ``torchvision:<Name>`` when present
  on disk.
- ``CLASSES``: class indices (positions in the dataset's sorted class list; for Fashion-MNIST and digits the
  labels 0-9) as ranges and lists: ``0-4``, ``5-9``, ``0,2,4``, ``0-2,7``.

Images are resized to the study's square ``image_size`` (28 px by default; digits are upsampled from 8 px with
bilinear interpolation) and kept in memory as float tensors in ``[0, 1]``. Per-class subsampling
(``train_per_class``, ``test_per_class``) is balanced and seeded.

Typical studies: within one dataset, split by classes (``fashion-mnist:0-4`` -> ``fashion-mnist:5-9``: the target
classes are never seen in pre-training), and across datasets (``fashion-mnist:0-4`` -> ``digits``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torchvision.transforms as T

from nctransfer.data import load_dataset
from nctransfer.data.splits import balanced_indices
from nctransfer.exceptions import InputValueError

#: Datasets available with no download.
OFFLINE_DATASETS = ("fashion-mnist", "digits")
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
    return name, classes


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
        seed: seed of the subsampling.
        root: data directory passed to :func:`nctransfer.data.load_dataset` (Fashion-MNIST IDX files...).

    Returns:
        :class:`StudyData` with the original class indices as labels.

    Raises:
        NotFoundError: unknown dataset or files missing. InputValueError: bad classes or sizes.

    Examples:
        >>> d = load_study_data("digits:0-4", train_per_class=10, test_per_class=5)
        >>> tuple(d.X_train.shape), d.classes
        ((50, 1, 28, 28), [0, 1, 2, 3, 4])
    """
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 4:
        raise InputValueError(f"image_size must be an integer >= 4; got {image_size!r}.")
    name, classes = parse_spec(spec)
    parts = {}
    names: list[str] = []
    for split, per_class, split_seed in (("trainval", train_per_class, seed), ("test", test_per_class, seed + 1)):
        ds = load_dataset(name, split, root=root)
        names = [str(c) for c in ds.classes]
        targets = np.asarray(ds.targets, dtype=np.int64)
        keep = _keep(targets, classes, spec, list(range(len(names))))
        pos = np.flatnonzero(keep)
        if per_class is not None:
            if isinstance(per_class, bool) or not isinstance(per_class, (int, np.integer)) or per_class < 1:
                raise InputValueError(f"{'train' if split == 'trainval' else 'test'}_per_class must be a positive "
                                      f"integer or None; got {per_class!r}.")
            pos = pos[balanced_indices(targets[pos], int(per_class), seed=split_seed)]
        if getattr(ds, "images", None) is None:  # file-backed: decode at the study's size
            ds.transform = T.Compose([T.Resize(image_size), T.CenterCrop(image_size), T.ToTensor()])
        X, y = ds.get_batch(pos) if len(pos) else (torch.empty(0, 1, image_size, image_size), torch.empty(0))
        parts[split] = (_resize(X.float(), image_size).contiguous(), np.asarray(y, dtype=np.int64))
    (Xtr, ytr), (Xte, yte) = parts["trainval"], parts["test"]
    kept = sorted(int(c) for c in np.unique(ytr))
    if len(kept) < 2:
        raise InputValueError(f"dataset {spec!r}: at least 2 classes are needed; got {kept}.")
    if len(yte) == 0:
        raise InputValueError(f"dataset {spec!r}: the test split is empty.")
    return StudyData(spec, Xtr, ytr, Xte, yte, kept, [names[c] for c in kept])
