"""Linear-probe accuracy: the ground truth of transferability rankings (docs/methods.md#finetuning).

Multinomial logistic regression (L-BFGS) on standardised features, with the inverse L2 strength ``C``
chosen on a stratified validation split from a log-spaced grid (Xu & Liu, ICML 2023 uses 97 values in
``[1e-6, 1e6]``; the default here is 7 values in ``[1e-3, 1e3]``), then refit on train+validation.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from sklearn.exceptions import ConvergenceWarning as SkConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from nctransfer.exceptions import InputValueError
from nctransfer.utils.validation import check_features, check_labels, check_n_classes, to_numpy

DEFAULT_C_GRID: tuple[float, ...] = tuple(np.logspace(-3, 3, 7))


@dataclass
class ProbeResult:
    """``accuracy`` on the test set, the chosen ``C``, the validation accuracy of every grid value, and
    ``correct``: the per-sample correctness of the test predictions (bool ``[M]``, ``correct.mean() == accuracy``),
    which lets an evaluation resample the test set (:func:`nctransfer.transferability.evaluate`,
    ``truth_samples=``)."""

    accuracy: float
    C: float
    val_accuracy: dict[float, float] = field(default_factory=dict)
    train_accuracy: float = float("nan")
    correct: np.ndarray | None = None


def pack_correct(correct: Any) -> str:
    """Per-sample correctness ``[M]`` (bool) as a compact JSON-able string: ``"<M>:<hex of the packed bits>"``
    (M / 4 characters; 3 000 test samples take 757 bytes)."""
    c = np.asarray(correct, dtype=bool).ravel()
    return f"{len(c)}:{np.packbits(c).tobytes().hex()}"


def unpack_correct(text: str) -> np.ndarray:
    """Inverse of :func:`pack_correct`: the bool ``[M]`` array."""
    try:
        n, hexbits = str(text).split(":", 1)
        bits = np.unpackbits(np.frombuffer(bytes.fromhex(hexbits), dtype=np.uint8))
        m = int(n)
        if m < 0 or m > len(bits) or len(bits) - m >= 8:
            raise ValueError
    except ValueError:
        raise InputValueError(f"unpack_correct: expected '<n>:<hex bits>' from pack_correct; got {str(text)[:40]!r}."
                              ) from None
    return bits[:m].astype(bool)


def _fit(X: np.ndarray, y: np.ndarray, C: float, max_iter: int, seed: int) -> Any:
    clf = LogisticRegression(C=C, max_iter=max_iter, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkConvergenceWarning)
        clf.fit(X, y)
    return clf


def probe_accuracy(
    X_train: Any,
    y_train: Any,
    X_test: Any,
    y_test: Any,
    *,
    C_grid: Sequence[float] | None = DEFAULT_C_GRID,
    val_fraction: float = 0.2,
    max_iter: int = 500,
    seed: int = 0,
) -> ProbeResult:
    """Test accuracy of a multinomial logistic-regression probe.

    Args:
        X_train, y_train: training features ``[N, d]`` and labels ``[N]``.
        X_test, y_test: test features ``[M, d]`` and labels ``[M]``.
        C_grid: inverse L2 strengths tried on the validation split; ``None`` or one value: no search.
        val_fraction: stratified fraction of the training data held out to choose ``C``.
        max_iter: L-BFGS iterations.
        seed: seed of the split and the solver.

    Returns:
        :class:`ProbeResult` with the test accuracy (in ``[0, 1]``), the chosen ``C`` and the per-sample
        correctness of the test predictions.
    """
    Xtr = np.asarray(to_numpy(check_features(X_train, "X_train")), dtype=np.float64)
    Xte = np.asarray(to_numpy(check_features(X_test, "X_test")), dtype=np.float64)
    ytr = check_labels(y_train, len(Xtr), "y_train")
    yte = check_labels(y_test, len(Xte), "y_test")
    check_n_classes(len(np.unique(ytr)), name="y_train")
    grid = [1.0] if not C_grid else [float(c) for c in C_grid]
    val_acc: dict[float, float] = {}
    if len(grid) > 1:
        _, counts = np.unique(ytr, return_counts=True)
        stratify = ytr if counts.min() >= 2 else None
        Xa, Xv, ya, yv = train_test_split(Xtr, ytr, test_size=val_fraction, random_state=seed, stratify=stratify)
        scaler = StandardScaler().fit(Xa)
        Xa_s, Xv_s = scaler.transform(Xa), scaler.transform(Xv)
        for C in grid:
            val_acc[C] = float(_fit(Xa_s, ya, C, max_iter, seed).score(Xv_s, yv))
        best = max(grid, key=lambda c: (val_acc[c], -abs(np.log10(c))))
    else:
        best = grid[0]
    scaler = StandardScaler().fit(Xtr)
    clf = _fit(scaler.transform(Xtr), ytr, best, max_iter, seed)
    correct = np.asarray(clf.predict(scaler.transform(Xte)) == yte, dtype=bool)
    return ProbeResult(
        accuracy=float(correct.mean()),
        C=best,
        val_accuracy=val_acc,
        train_accuracy=float(clf.score(scaler.transform(Xtr), ytr)),
        correct=correct,
    )
