"""Datasets: Fashion-MNIST (Debian IDX files), scikit-learn digits, ImageFolder, torchvision, arrays, the user's own
Dataset / DataLoader / Hugging Face dataset (:mod:`nctransfer.data.inputs`) with content fingerprints
(:mod:`nctransfer.data.fingerprint`); the model's eval transform; seeded balanced subsampling and deterministic
splits."""

import importlib

from nctransfer.data.arrays import (
    FASHION_MNIST_CLASSES,
    find_fashion_mnist,
    load_digits_arrays,
    load_fashion_mnist_arrays,
    read_idx,
)
from nctransfer.data.splits import balanced_indices, canonical_split, stratified_holdout, subsample
from nctransfer.data.transforms import EvalTransform, ModelTransform, eval_transform, to_float_tensor, to_pil

#: names of the torch-backed modules, imported on first use so that ``import nctransfer.data`` stays numpy-only
_LAZY = {"load_dataset": "datasets", "ArrayImageDataset": "datasets", "WrappedImageDataset": "datasets",
         "LabeledDataset": "datasets", "LoaderDataset": "inputs", "HFImageSource": "inputs"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"nctransfer.data.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'nctransfer.data' has no attribute {name!r}")


__all__ = [
    "ArrayImageDataset",
    "EvalTransform",
    "FASHION_MNIST_CLASSES",
    "HFImageSource",
    "LabeledDataset",
    "LoaderDataset",
    "ModelTransform",
    "WrappedImageDataset",
    "balanced_indices",
    "canonical_split",
    "eval_transform",
    "find_fashion_mnist",
    "load_digits_arrays",
    "load_dataset",
    "load_fashion_mnist_arrays",
    "read_idx",
    "stratified_holdout",
    "subsample",
    "to_float_tensor",
    "to_pil",
]
