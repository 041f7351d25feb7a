"""Input checks that name the argument, say what was expected and what was given.

All array inputs may be numpy arrays, torch tensors (any device, any float dtype) or nested lists.
"""

from __future__ import annotations

from typing import Any, Hashable, Sequence

import numpy as np

from nctransfer.exceptions import InputValueError, ShapeError

_MAX_ROWS_SHOWN = 10


def is_torch(x: Any) -> bool:
    """True if ``x`` is a torch tensor (without importing torch when it is not loaded)."""
    return type(x).__module__.startswith("torch") and hasattr(x, "detach")


def to_numpy(x: Any) -> np.ndarray:
    """Convert a tensor, array or list to a numpy array (detached, on CPU)."""
    if is_torch(x):
        x = x.detach()
        if x.dtype.is_floating_point and x.element_size() < 4:  # half/bfloat16 have no numpy twin
            x = x.float()
        return x.cpu().numpy()
    return np.asarray(x)


def _shape(x: Any) -> tuple:
    return tuple(x.shape) if hasattr(x, "shape") else np.shape(x)


def check_features(X: Any, name: str = "X", allow_empty: bool = False) -> Any:
    """Check that ``X`` is a finite 2-D float array ``[N, d]``; return it (numpy or torch, unchanged type).

    Raises:
        ShapeError: not 2-D (with a hint on how to reshape), or empty.
        InputValueError: NaN or Inf values (how many, and in which rows).
    """
    if not is_torch(X) and not isinstance(X, np.ndarray):
        X = np.asarray(X)
        if X.dtype.kind not in "fc":
            try:
                X = X.astype(np.float64)
            except (TypeError, ValueError):
                raise InputValueError(f"{name} must hold numbers; got values of dtype {X.dtype}.") from None
    shape = _shape(X)
    if len(shape) != 2:
        hint = ""
        if len(shape) == 1:
            hint = f" Hint: for one feature per sample use {name}.reshape(-1, 1)."
        elif len(shape) > 2:
            hint = (f" Hint: pool spatial/token dimensions first, or flatten with "
                    f"{name}.reshape(len({name}), -1).")
        raise ShapeError(f"{name} must be a 2-D array of shape [N, d]; got shape {shape}.{hint}")
    if not allow_empty and (shape[0] == 0 or shape[1] == 0):
        raise ShapeError(f"{name} is empty: expected at least one sample and one feature, got shape {shape}.")
    if is_torch(X):
        if X.dtype.is_complex:
            raise InputValueError(f"{name} must hold real numbers; got complex dtype {X.dtype}. Take the real part, "
                                  "the magnitude, or stack real and imaginary parts as separate features.")
        if not X.dtype.is_floating_point:
            X = X.double()
        if bool(X.sum().isfinite()):  # cheap check first: no [N, d] mask on the normal path
            return X
        bad_mask = ~X.isfinite()
        n_bad = int(bad_mask.sum())
        if n_bad:
            rows = bad_mask.any(dim=1).nonzero().flatten()[: _MAX_ROWS_SHOWN + 1].cpu().tolist()
            _raise_non_finite(name, n_bad, rows, int(bad_mask.any(dim=1).sum()))
    else:
        if X.dtype.kind == "c":
            raise InputValueError(f"{name} must hold real numbers; got complex dtype {X.dtype}. Take the real part, "
                                  "the magnitude, or stack real and imaginary parts as separate features.")
        if X.dtype.kind != "f":
            if X.dtype.kind in "iub":
                X = X.astype(np.float64)
            else:
                raise InputValueError(f"{name} must hold numbers; got dtype {X.dtype}.")
        with np.errstate(over="ignore", invalid="ignore"):
            total = X.sum()  # cheap check first (a finite sum means every value is finite)
        if np.isfinite(total):
            return X
        bad_mask = ~np.isfinite(X)
        if bad_mask.any():
            bad_rows = np.flatnonzero(bad_mask.any(axis=1))
            _raise_non_finite(name, int(bad_mask.sum()), bad_rows[: _MAX_ROWS_SHOWN + 1].tolist(), len(bad_rows))
    return X


def _raise_non_finite(name: str, n_bad: int, rows: list[int], n_rows: int) -> None:
    shown = ", ".join(str(r) for r in rows[:_MAX_ROWS_SHOWN])
    more = f" and {n_rows - _MAX_ROWS_SHOWN} more" if n_rows > _MAX_ROWS_SHOWN else ""
    raise InputValueError(
        f"{name} contains {n_bad} non-finite value(s) (NaN or Inf) in {n_rows} row(s): rows [{shown}]{more}. "
        "Remove or impute these samples before computing statistics."
    )


def check_labels(y: Any, n_samples: int | None = None, name: str = "y", *, discrete: bool = True) -> np.ndarray:
    """Return labels as a 1-D numpy array; check the length against ``n_samples``.

    With ``discrete=True`` (default) the labels must be class labels (:func:`check_target_type`: continuous values
    such as 0.5 and complex numbers are refused); ``discrete=False`` accepts any hashable values (the streaming
    statistics accumulate whatever grouping they are given; metrics check the labels when they use them).
    """
    y_np = to_numpy(y)
    if y_np.ndim == 2 and 1 in y_np.shape:
        y_np = y_np.reshape(-1)
    if y_np.ndim != 1:
        raise ShapeError(f"{name} must be a 1-D array of labels of shape [N]; got shape {y_np.shape}.")
    if n_samples is not None and len(y_np) != n_samples:
        raise ShapeError(f"X and {name} have different lengths: X has {n_samples} rows, {name} has {len(y_np)}.")
    if y_np.dtype.kind == "f" and not np.all(np.isfinite(y_np)):
        raise InputValueError(f"{name} contains NaN or Inf labels.")
    if discrete:
        check_target_type(y_np, name)
    return y_np


def type_of_target(y: Any) -> str:
    """Kind of a label vector, as scikit-learn's ``sklearn.utils.multiclass.type_of_target`` names it.

    Returns ``"binary"`` (at most two distinct values), ``"multiclass"`` (more, all discrete: integers, integral
    floats, strings, booleans, tuples...), ``"continuous"`` (a float value that is not an integer, e.g. 0.5) or
    ``"complex"`` (complex numbers). Only 1-D label vectors are classified here.
    """
    y_np = to_numpy(y)
    kind = y_np.dtype.kind
    if kind == "c":
        return "complex"
    if kind == "f":
        finite = y_np[np.isfinite(y_np)]
        if finite.size and np.any(finite != np.round(finite)):
            return "continuous"
    elif kind == "O":
        for v in y_np.ravel().tolist():
            if isinstance(v, (complex, np.complexfloating)):
                return "complex"
            if isinstance(v, (float, np.floating)) and np.isfinite(v) and v != round(v):
                return "continuous"
    try:
        n_unique = len(np.unique(y_np)) if kind != "O" else len(set(y_np.ravel().tolist()))
    except TypeError:  # unhashable objects: let the label encoder report them
        n_unique = len(y_np)
    return "binary" if n_unique <= 2 else "multiclass"


def check_target_type(y: Any, name: str = "y") -> str:
    """Raise unless ``y`` holds discrete class labels (``binary`` or ``multiclass``); return the kind.

    Continuous values (e.g. 0.5, 1.5) and complex numbers are refused: treating every distinct real value as a
    class gives one sample per class and a meaningless "perfect collapse".
    """
    kind = type_of_target(y)
    if kind == "continuous":
        y_np = to_numpy(y).ravel()
        vals = list(dict.fromkeys(v for v in y_np.tolist() if isinstance(v, float) and v != round(v)))[:3]
        raise InputValueError(
            f"{name} must hold class labels (integers, strings, ...); got continuous values such as "
            f"{', '.join(f'{v:g}' for v in vals)}. Map the classes to integers, bin a real-valued target into "
            "classes, or use a regression form where a score has one (logme(X, y, regression=True)).")
    if kind == "complex":
        raise InputValueError(f"{name} must hold class labels (integers, strings, ...); got complex numbers.")
    return kind


def check_class_sizes(counts: Any, name: str = "y") -> None:
    """Raise unless at least one class has two or more samples.

    With one sample per class (``N = K``) every within-class scatter is 0 by construction, so collapse metrics
    would report perfect collapse (NC1 = 0, NCC accuracy = 1) whatever the features: such labels are not a
    classification of the samples.
    """
    c = np.asarray(counts)
    if c.size and int(np.max(c)) < 2:
        raise InputValueError(
            f"{name} has one sample per class ({c.size} classes, {int(np.sum(c))} samples): no class has two "
            "samples, so within-class variability is undefined and every collapse measure would look perfect. "
            "Are these class labels (not sample ids or a continuous target)?")


def check_consistent_length(**arrays: Any) -> int:
    """Check every named array has the same first dimension; return it."""
    lengths = {k: _shape(v)[0] for k, v in arrays.items() if v is not None}
    if len(set(lengths.values())) > 1:
        desc = ", ".join(f"{k} has {n}" for k, n in lengths.items())
        raise ShapeError(f"Inconsistent numbers of samples: {desc}.")
    return next(iter(lengths.values()))


def check_n_classes(n_classes: int, minimum: int = 2, name: str = "y") -> None:
    """Raise unless at least ``minimum`` distinct classes are present."""
    if n_classes < minimum:
        raise InputValueError(
            f"{name} must contain at least {minimum} distinct classes; got {n_classes}. "
            "Collapse metrics and transferability scores compare classes."
        )


def check_probs(probs: Any, n_samples: int, name: str = "probs", atol: float = 1e-4) -> np.ndarray:
    """Check source-classifier probabilities: ``[N, C]``, non-negative, rows summing to one."""
    if probs is None:
        raise InputValueError(f"{name} is required: pass the source classifier's softmax probabilities [N, C_src].")
    P = np.asarray(to_numpy(probs), dtype=np.float64)
    if P.ndim != 2:
        raise ShapeError(f"{name} must be 2-D [N, C_src]; got shape {P.shape}.")
    if P.shape[0] != n_samples:
        raise ShapeError(f"X and {name} have different lengths: X has {n_samples} rows, {name} has {P.shape[0]}.")
    if not np.all(np.isfinite(P)):
        raise InputValueError(f"{name} contains NaN or Inf.")
    if (P < -atol).any():
        raise InputValueError(f"{name} must be probabilities (>= 0); got a minimum of {P.min():.4g}.")
    sums = P.sum(axis=1)
    bad = np.flatnonzero(np.abs(sums - 1.0) > atol)
    if len(bad):
        raise InputValueError(
            f"{name} rows must sum to one (softmax probabilities, not logits); {len(bad)} row(s) do not, "
            f"e.g. row {bad[0]} sums to {sums[bad[0]]:.6g}. Apply softmax to logits first."
        )
    return np.clip(P, 0.0, None)


class LabelEncoder:
    """Maps hashable labels to codes ``0..K-1`` in order of first appearance; grows as new labels arrive.

    ``classes`` are in first-seen order; ``sorted_order()`` gives the permutation that sorts them
    (falling back to first-seen order when labels of mixed types cannot be compared).
    """

    def __init__(self, classes: Sequence[Hashable] = ()) -> None:
        self.classes: list[Hashable] = []
        self._index: dict[Hashable, int] = {}
        for c in classes:
            self._add(c)

    def _add(self, c: Hashable) -> int:
        code = len(self.classes)
        self.classes.append(c)
        self._index[c] = code
        return code

    def encode(self, y: np.ndarray) -> np.ndarray:
        """Codes for ``y`` (shape [N]); unseen labels get new codes."""
        if len(y) == 0:
            return np.zeros(0, dtype=np.int64)
        uniq, inv = np.unique(y, return_inverse=True) if y.dtype != object else _unique_object(y)
        codes = np.empty(len(uniq), dtype=np.int64)
        for i, u in enumerate(uniq):
            key = u.item() if isinstance(u, np.generic) else u
            code = self._index.get(key)
            codes[i] = self._add(key) if code is None else code
        return codes[inv.reshape(-1)]

    def sorted_order(self) -> np.ndarray:
        try:
            keys = sorted(range(len(self.classes)), key=lambda i: self.classes[i])
        except TypeError:
            keys = list(range(len(self.classes)))
        return np.asarray(keys, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.classes)


def _unique_object(y: np.ndarray) -> tuple[list, np.ndarray]:
    index: dict = {}
    inv = np.empty(len(y), dtype=np.int64)
    for i, v in enumerate(y):
        inv[i] = index.setdefault(v, len(index))
    return list(index), inv
