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

Where things are: the dataset types in :mod:`nctransfer.data.image_datasets`, one loader per source in
:mod:`nctransfer.data.sources`, image folders in :mod:`nctransfer.data.folders`, the split and subsample
arithmetic in :mod:`nctransfer.data.splits`; this module dispatches ``spec`` to them.
"""


from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from nctransfer.exceptions import InputValueError, NotFoundError
from nctransfer.utils.extras import require_extra
from nctransfer.utils.optins import skip_bad_images, skipping_bad_images
from nctransfer.utils.validation import LabelEncoder, check_labels

require_extra("torch", "nctransfer.data.datasets", ("torch", "torchvision"))  # optional: fail now, naming the extra

from torch.utils.data import Dataset  # noqa: E402  (after the check above)

from nctransfer.data.folders import drop_bad_images, image_folder  # noqa: E402
from nctransfer.data.image_datasets import (  # noqa: E402
    ArrayImageDataset,
    LabeledDataset,
    WrappedImageDataset,
    images_to_nchw,
)
from nctransfer.data.inputs import LoaderDataset, is_dataloader, is_hf_dataset  # noqa: E402
from nctransfer.data.sources import (  # noqa: E402
    BUILTIN,
    TORCHVISION_ROOT,
    digits_split,
    explicit_part,
    fashion_mnist_split,
    hf_hub_dataset,
    is_hf_dict,
    torchvision_dataset,
    user_dataset,
)
from nctransfer.data.splits import canonical_split, split_positions, subsample  # noqa: E402
from nctransfer.data.transforms import eval_transform  # noqa: E402


def _is_loaded(spec: Any) -> bool:
    """A dataset returned by :func:`load_dataset` (arrays, wrapped, DataLoader)."""
    return isinstance(spec, (ArrayImageDataset, WrappedImageDataset, LoaderDataset))


def _is_dataset_like(spec: Any) -> bool:
    first = spec[0] if len(spec) else None
    return isinstance(first, Dataset) or is_dataloader(first) or is_hf_dataset(first)


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
        spec = hf_hub_dataset(spec[3:], root)
    if isinstance(spec, Mapping) or is_hf_dict(spec):
        part, part_split = explicit_part(spec, split)
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
        images = images_to_nchw(X, "X")
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
        pos = split_positions(codes, split_c, has_official=False, **kw)
        ds: Any = ArrayImageDataset(images[pos], codes[pos], names, None, name="arrays", meta={"split": split_c})
    elif isinstance(spec, (str, os.PathLike)):
        s = str(spec)
        key = BUILTIN.get(s.lower())
        if key == "fashion-mnist":
            X, y, names, _ = fashion_mnist_split(split_c, root, **kw)
            ds = ArrayImageDataset(images_to_nchw(X), y, names, None, name="fashion-mnist", meta={"split": split_c})
        elif key == "digits":
            X, y, names, _ = digits_split(split_c, **kw)
            ds = ArrayImageDataset(images_to_nchw(X), y, names, None, name="digits", meta={"split": split_c})
        elif s.lower().startswith(("torchvision:", "tv:")):
            ds = torchvision_dataset(s.split(":", 1)[1], split_c, None, root, download, **kw)
            in_memory = isinstance(ds, ArrayImageDataset)
        elif Path(s).expanduser().is_dir():
            ds = image_folder(Path(s).expanduser(), split_c, None, **kw)
            if skipping_bad_images(skip_bad_images):
                ds = drop_bad_images(ds)
            in_memory = False
        else:
            close = difflib.get_close_matches(s.lower(), list(BUILTIN), n=3, cutoff=0.5)
            raise NotFoundError(
                f"unknown dataset {s!r}: not a built-in name ({', '.join(sorted(set(BUILTIN.values())))}), not "
                "'torchvision:<Name>' and not an existing directory." + (f" Did you mean: {', '.join(close)}?"
                                                                          if close else ""))
    elif _is_loaded(spec):  # already loaded: re-targeted (another model's transform, a subsample), never re-hashed
        ds = spec
        if split is not None and canonical_split(split) != "all":
            if isinstance(ds, LoaderDataset):
                ds.subset([])  # raises the DataLoader message before a pass over the loader for its targets
            ds = ds.subset(split_positions(ds.targets, split_c, has_official=False, **kw), split=split_c)
        in_memory = isinstance(spec, ArrayImageDataset)
    else:
        ds = user_dataset(spec, split, split_c, kw, classes=classes, image_column=image_column,
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


__all__ = [
    "ArrayImageDataset", "BUILTIN", "LabeledDataset", "TORCHVISION_ROOT", "WrappedImageDataset", "load_dataset",
    "skip_bad_images", "subsample",
]
