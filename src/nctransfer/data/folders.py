"""Image-folder datasets (``root/<class>/<image>``; ``train/``, ``test/`` and optionally ``val/`` sub-directories
are the splits) and the skipping of image files that cannot be decoded (``load_dataset(skip_bad_images=True)``, or
within :func:`~nctransfer.utils.optins.skip_bad_images`: the CLI's ``--skip-bad-images``)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from torchvision.datasets import ImageFolder

from nctransfer.data.image_datasets import WrappedImageDataset, item_path
from nctransfer.data.splits import split_positions
from nctransfer.exceptions import InputValueError, NotFoundError


def drop_bad_images(ds: WrappedImageDataset) -> WrappedImageDataset:
    """``ds`` without the items whose image file cannot be decoded (each file is opened and fully decoded once);
    the skipped files are listed in ``ds.meta["skipped_images"]`` and reported with a warning."""
    bad: list[str] = []
    keep: list[int] = []
    for i, j in enumerate(ds.indices.tolist()):
        path = item_path(ds.base, j)
        if path is None:
            keep.append(i)
            continue
        try:
            with Image.open(path) as im:
                im.load()
            keep.append(i)
        except (OSError, ValueError, SyntaxError) as exc:
            bad.append(f"{path} ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})")
    if not bad:
        return ds
    warnings.warn(f"skipped {len(bad)} unreadable image file(s) of {ds.name}: {'; '.join(bad[:10])}"
                  f"{' ...' if len(bad) > 10 else ''}", UserWarning, stacklevel=3)
    out = ds.subset(np.asarray(keep, dtype=np.int64))
    out.meta["skipped_images"] = bad
    return out


def image_folder(path: Path, split: str, transform: Any, **kw: Any) -> WrappedImageDataset:
    """``split`` of the image folder ``path``: its ``train/``, ``test/`` (and ``val/``) sub-directories when it has
    them (``val`` carved from ``train/`` without a ``val/``), else carved from the flat folder (``kw``: the
    ``val_fraction``, ``test_fraction`` and ``seed`` of :func:`~nctransfer.data.splits.split_positions`)."""
    subdirs = {p.name.lower(): p for p in path.iterdir() if p.is_dir()}
    val_dir = next((subdirs[k] for k in ("val", "valid", "validation") if k in subdirs), None)
    if "train" in subdirs and "test" in subdirs:
        if split == "test":
            folder, official = subdirs["test"], "folder"
        elif val_dir is not None and split == "val":
            folder, official = val_dir, "folder"
        elif val_dir is not None and split == "train":
            folder, official = subdirs["train"], "folder"
        elif split == "all":
            raise InputValueError(f"{path} has train/ and test/ sub-directories; use split='train', 'val', 'test' "
                                  "or 'trainval'.")
        else:
            folder, official = subdirs["train"], "carve"
    else:
        folder, official = path, "flat"
    try:
        base = ImageFolder(str(folder))
    except (FileNotFoundError, RuntimeError) as exc:
        raise NotFoundError(f"no images found under {folder} (expected {folder}/<class>/<image>): {exc}") from exc
    targets = np.asarray(base.targets, dtype=np.int64)
    if official == "folder":
        pos = np.arange(len(targets))
    else:
        pos = split_positions(targets, split, has_official=(official == "carve"), **kw)
    return WrappedImageDataset(base, pos, targets, base.classes, transform, name=f"folder:{path.resolve()}",
                               meta={"split": split, "root": str(path.resolve())})
