"""Datasets: Fashion-MNIST (Debian IDX files), scikit-learn digits, ImageFolder, torchvision, arrays."""

from nctransfer.data.arrays import (
    FASHION_MNIST_CLASSES,
    find_fashion_mnist,
    load_digits_arrays,
    load_fashion_mnist_arrays,
    read_idx,
)

__all__ = [
    "FASHION_MNIST_CLASSES",
    "find_fashion_mnist",
    "load_digits_arrays",
    "load_fashion_mnist_arrays",
    "read_idx",
]
