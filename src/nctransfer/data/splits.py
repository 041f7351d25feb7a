"""Deterministic stratified splits and seeded balanced subsampling (index arithmetic only): the ``split=``,
``per_class=`` and ``n=`` of :func:`nctransfer.data.load_dataset`."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from nctransfer.exceptions import InputValueError

SPLIT_ALIASES = {
    "train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test",
    "trainval": "trainval", "train+val": "trainval", "all": "all",
}


def canonical_split(split: str) -> str:
    """``"validation"`` -> ``"val"``, ``"train+val"`` -> ``"trainval"``... Raises for unknown names."""
    if not isinstance(split, str) or split.lower() not in SPLIT_ALIASES:
        raise InputValueError(f"split must be one of 'train', 'val' (or 'validation'), 'test', 'trainval', 'all'; "
                              f"got {split!r}.")
    return SPLIT_ALIASES[split.lower()]


def stratified_holdout(targets: np.ndarray, fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Split positions ``0..N-1`` into ``(kept, held_out)``, holding out ``round(fraction * n_k)`` of each class
    (chosen by a seeded permutation); both returned sorted.

    Args:
        targets: ``[N]`` class labels.
        fraction: in ``[0, 1)``.
        seed: permutation seed (the same seed always gives the same split).
    """
    if not 0.0 <= float(fraction) < 1.0:
        raise InputValueError(f"fraction must be in [0, 1); got {fraction!r}.")
    targets = np.asarray(targets)
    rng = np.random.default_rng(seed)
    held: list[np.ndarray] = []
    for c in np.unique(targets):
        idx = np.flatnonzero(targets == c)
        k = int(round(fraction * len(idx)))
        if k:
            held.append(rng.permutation(idx)[:k])
    held_idx = np.sort(np.concatenate(held)) if held else np.zeros(0, dtype=np.int64)
    mask = np.ones(len(targets), dtype=bool)
    mask[held_idx] = False
    return np.flatnonzero(mask), held_idx


def balanced_indices(targets: Any, per_class: int | None = None, *, n: int | None = None, seed: int = 0,
                     strict: bool = False) -> np.ndarray:
    """Seeded balanced subsample of positions ``0..N-1`` (sorted).

    Args:
        targets: ``[N]`` labels.
        per_class: samples drawn from every class.
        n: alternatively a total: ``n // K`` per class plus one more for ``n % K`` classes chosen at random.
        seed: the draw's seed (same seed, same subset; a larger ``per_class`` with the same seed is a superset).
        strict: raise instead of warning when a class has fewer than ``per_class`` samples (it then keeps all).
    """
    targets = np.asarray(targets)
    classes = np.unique(targets)
    K = len(classes)
    if (per_class is None) == (n is None):
        raise InputValueError("give exactly one of per_class= or n=.")
    rng = np.random.default_rng(seed)
    if per_class is not None:
        if isinstance(per_class, bool) or not isinstance(per_class, (int, np.integer)) or per_class < 1:
            raise InputValueError(f"per_class must be a positive integer; got {per_class!r}.")
        quota = {c: int(per_class) for c in classes}
    else:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise InputValueError(f"n must be a positive integer; got {n!r}.")
        base, extra = divmod(int(n), K)
        lucky = set(rng.permutation(classes)[:extra].tolist())
        quota = {c: base + (1 if c in lucky else 0) for c in classes}
    out: list[np.ndarray] = []
    short: dict[Any, int] = {}
    for c in classes:
        idx = np.flatnonzero(targets == c)
        perm = np.random.default_rng([seed, int(np.searchsorted(classes, c))]).permutation(idx)
        if quota[c] > len(idx):
            short[c.item() if hasattr(c, "item") else c] = len(idx)
        out.append(perm[:quota[c]])
    if short:
        msg = (f"{len(short)} class(es) have fewer samples than requested ({max(quota.values())}): {short}; "
               "they keep all their samples.")
        if strict:
            raise InputValueError(msg)
        warnings.warn(msg, stacklevel=3)
    return np.sort(np.concatenate(out)) if out else np.zeros(0, dtype=np.int64)


def split_positions(targets: np.ndarray, split: str, *, has_official: bool, val_fraction: float,
                     test_fraction: float, seed: int) -> np.ndarray:
    """Positions of ``split`` within the pool ``targets``.

    With an official train/test split (``has_official``: the pool is the official training set), ``val`` is a
    stratified ``val_fraction`` of the pool and ``train`` the rest (``trainval``: the whole pool). Without one,
    ``test`` is a stratified ``test_fraction`` of the pool and ``val`` a ``val_fraction`` of the remainder
    (seeded ``seed + 1``). ``split`` is a canonical name (:func:`canonical_split`).
    """
    n = len(targets)
    if has_official:  # the pool is the official training set
        if split == "trainval":
            return np.arange(n)
        keep, val = stratified_holdout(targets, val_fraction, seed)
        if split == "val" and len(val) == 0:
            raise InputValueError("split='val' needs val_fraction > 0.")
        return keep if split == "train" else val
    if split == "all":
        return np.arange(n)
    rest, test = stratified_holdout(targets, test_fraction, seed)
    if split == "test":
        if len(test) == 0:
            raise InputValueError("split='test' needs test_fraction > 0.")
        return test
    if split == "trainval":
        return rest
    keep, val = stratified_holdout(targets[rest], val_fraction, seed + 1)
    if split == "val" and len(val) == 0:
        raise InputValueError("split='val' needs val_fraction > 0.")
    return rest[keep] if split == "train" else rest[val]


def subsample(dataset: Any, per_class: int | None = None, *, n: int | None = None, seed: int = 0,
              strict: bool = False) -> Any:
    """Seeded balanced subset of a dataset from :func:`~nctransfer.data.load_dataset` (``per_class`` samples of every
    class, or a total ``n`` spread evenly); see :func:`balanced_indices`."""
    idx = balanced_indices(dataset.targets, per_class, n=n, seed=seed, strict=strict)
    return dataset.subset(idx, subsample={"per_class": per_class, "n": n, "seed": seed})
