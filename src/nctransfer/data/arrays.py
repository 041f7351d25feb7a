"""Real datasets as in-memory numpy arrays, with no download: Fashion-MNIST from IDX files (the Debian
package ``dataset-fashion-mnist`` installs them in ``/usr/share/datasets/fashion-mnist``) and
scikit-learn's bundled 8x8 digits.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from nctransfer.exceptions import InputValueError, NotFoundError

FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
FASHION_MNIST_DIRS = (
    "/usr/share/datasets/fashion-mnist",
    "~/.cache/nctransfer/fashion-mnist",
)
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_SPLIT_FILES = {"train": "train", "test": "t10k"}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (optionally gzip-compressed) into a numpy array of its declared shape."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        data = fh.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise InputValueError(f"{path} is not an IDX file (bad magic number {data[:4]!r}).")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    body = np.frombuffer(data, dtype=dtype, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise InputValueError(f"{path} is truncated: header says {dims}, found {body.size} values.")
    return body.reshape(dims).astype(dtype.newbyteorder("=")) if dtype.byteorder == ">" else body.reshape(dims)


def find_fashion_mnist(root: str | os.PathLike | None = None) -> Path:
    """Directory holding the four Fashion-MNIST IDX files: ``root``, ``$NCTRANSFER_FASHION_MNIST`` or the
    Debian package's location. Raises :class:`NotFoundError` saying how to install it otherwise."""
    candidates = [root] if root is not None else [os.environ.get("NCTRANSFER_FASHION_MNIST"), *FASHION_MNIST_DIRS]
    for cand in candidates:
        if cand is None:
            continue
        p = Path(cand).expanduser()
        if all(_idx_file(p, s, "images") for s in _SPLIT_FILES) and all(_idx_file(p, s, "labels") for s in _SPLIT_FILES):
            return p
    where = root if root is not None else ", ".join(FASHION_MNIST_DIRS)
    raise NotFoundError(
        f"Fashion-MNIST IDX files not found in {where}. Install them offline with "
        "`apt-get install dataset-fashion-mnist` (Debian), or pass a directory holding "
        "train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz], "
        "t10k-labels-idx1-ubyte[.gz]."
    )


def _idx_file(directory: Path, split: str, kind: str) -> Path | None:
    stem = f"{_SPLIT_FILES[split]}-{kind}-idx{3 if kind == 'images' else 1}-ubyte"
    for name in (stem + ".gz", stem):
        if (directory / name).is_file():
            return directory / name
    return None


def load_fashion_mnist_arrays(split: str = "train", root: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST images ``uint8 [N, 28, 28]`` and labels ``int64 [N]`` (N = 60000 train, 10000 test)."""
    if split not in _SPLIT_FILES:
        raise InputValueError(f"split must be one of {sorted(_SPLIT_FILES)}; got {split!r}.")
    directory = find_fashion_mnist(root)
    images = read_idx(_idx_file(directory, split, "images"))
    labels = read_idx(_idx_file(directory, split, "labels")).astype(np.int64)
    if len(images) != len(labels):
        raise InputValueError(f"Fashion-MNIST {split}: {len(images)} images but {len(labels)} labels.")
    return images, labels


def load_digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits: images ``float64 [1797, 8, 8]`` in ``[0, 16]`` and labels ``int64 [1797]``."""
    from sklearn.datasets import load_digits  # deferred: a 1.5 s import that only the digits dataset needs

    d = load_digits()
    return d.images, d.target.astype(np.int64)
