"""``nctransfer demo`` (interim): every collapse metric on raw pixels of real datasets, as one table.

Datasets: scikit-learn's 8x8 digits (1797 images, d = 64, always available) and, when its IDX files are
installed (Debian package ``dataset-fashion-mnist``), a seeded class-balanced subset of the Fashion-MNIST
training set (default 1000 images per class, d = 784). Pixels are scaled to ``[0, 1]``. Runs in seconds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from typing import Any

import numpy as np


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--fashion-per-class", type=int, default=1000,
                        help="Fashion-MNIST training images per class (balanced, seeded); 0 skips Fashion-MNIST")
    parser.add_argument("--fashion-root", default=None, help="directory of the Fashion-MNIST IDX files")
    parser.add_argument("--seed", type=int, default=0, help="seed of the Fashion-MNIST subset")
    parser.add_argument("--json", action="store_true", help="print {dataset: {metric: value}} as JSON")


def balanced_subset(y: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Sorted indices of ``min(per_class, n_k)`` seeded random samples of every class."""
    rng = np.random.default_rng(seed)
    idx = [rng.choice(np.flatnonzero(y == c), size=min(per_class, int(np.sum(y == c))), replace=False)
           for c in np.unique(y)]
    return np.sort(np.concatenate(idx))


def demo_datasets(per_class: int = 1000, root: str | None = None, seed: int = 0) -> tuple[dict[str, Any], list[str]]:
    """``({name: (X [N, d] float64 in [0, 1], y [N])}, notes)`` for digits and, if present, Fashion-MNIST."""
    from nctransfer.data.arrays import load_digits_arrays, load_fashion_mnist_arrays
    from nctransfer.exceptions import NotFoundError

    out: dict[str, Any] = {}
    notes: list[str] = []
    images, labels = load_digits_arrays()
    out["digits"] = (images.reshape(len(images), -1) / 16.0, labels)
    if per_class > 0:
        try:
            images, labels = load_fashion_mnist_arrays("train", root)
        except NotFoundError as exc:
            notes.append(f"Fashion-MNIST skipped: {exc}")
        else:
            idx = balanced_subset(labels, per_class, seed)
            out["fashion-mnist"] = (images[idx].reshape(len(idx), -1).astype(np.float64) / 255.0, labels[idx])
    return out, notes


def run(args: argparse.Namespace) -> int:
    from nctransfer import metrics as M
    from nctransfer.cli.cmd_metrics import json_safe

    datasets, notes = demo_datasets(args.fashion_per_class, args.fashion_root, args.seed)
    columns: dict[str, dict[str, float]] = {}
    timings = []
    for name, (X, y) in datasets.items():
        t0 = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            values = M.compute_all(X, y)
        for w in caught:
            notes.append(f"{name}: {w.category.__name__}: {w.message}")
        columns[f"{name} (N={len(X)}, d={X.shape[1]}, K={len(np.unique(y))})"] = values
        timings.append(f"{name} {time.perf_counter() - t0:.2f}s")
    if args.json:
        print(json.dumps({k: json_safe(v) for k, v in columns.items()}))
    else:
        print("Neural-collapse metrics of raw pixels (spec section 1)")
        print(M.format_table(columns))
        print(f"computed in {', '.join(timings)}")
    for note in notes:
        print(note, file=sys.stderr)
    return 0
