"""Datasets: Fashion-MNIST (Debian IDX files), scikit-learn digits, ImageFolder, torchvision, arrays, the user's own
Dataset / DataLoader / Hugging Face dataset (:mod:`nctransfer.data.inputs`) with content fingerprints
(:mod:`nctransfer.data.fingerprint`); the model's eval transform; seeded balanced subsampling and deterministic
splits."""

from nctransfer.data.arrays import (
    FASHION_MNIST_CLASSES,
    find_fashion_mnist,
    load_digits_arrays,
    load_fashion_mnist_arrays,
    read_idx,
)
from nctransfer.data.splits import balanced_indices, canonical_split, stratified_holdout
from nctransfer.data.transforms import EvalTransform, ModelTransform, eval_transform, to_float_tensor, to_pil


def __getattr__(name: str):  # torch-backed datasets load lazily (``import nctransfer.data`` stays numpy-only)
    if name in ("load_dataset", "subsample", "ArrayImageDataset", "WrappedImageDataset", "LabeledDataset"):
        from nctransfer.data import datasets

        return getattr(datasets, name)
    if name in ("LoaderDataset", "HFImageSource"):
        from nctransfer.data import inputs

        return getattr(inputs, name)
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
