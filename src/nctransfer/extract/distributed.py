"""Data-parallel extraction under ``torch.distributed`` (launched by ``torchrun``).

Each of the P processes extracts one contiguous slice of the dataset: the N samples are cut into the same batches of
``batch_size`` as a one-process run, and each rank takes a contiguous run of whole batches (ranks differ by at most
one batch; every sample is extracted exactly once, also when N is not a multiple of P or of the batch size). Every
forward pass therefore sees exactly the batches of a one-process run, so the features are the same numbers.

Each rank streams its slice into ``FeatureStats`` (through :func:`nctransfer.extract.extract`, so with the same
resumable, checksummed, locked cache entries: one per rank slice, the "per-rank shards" of the feature store), then
the statistics are summed across ranks with :meth:`FeatureStats.all_reduce`: every rank ends with the statistics of
the whole dataset. Stored features are read back as one ``[N, d]`` array in the original sample order: from the
rank entries of a shared cache directory, or gathered from the ranks when there is no cache.

Launch (CPU, 2 processes; on GPUs ``--nproc_per_node`` = number of GPUs, each rank uses ``cuda:LOCAL_RANK``)::

    torchrun --nproc_per_node=2 -m nctransfer rank --models efficientnet_lite0,efficientnet_lite1 \\
        --data digits --out runs/rank

The cache directory must be visible to every rank (a shared file system across nodes) for stored features to be
read back from it; without a cache they travel through the process group.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from nctransfer.exceptions import InputValueError
from nctransfer.extract.results import ExtractionResult, TapResult
from nctransfer.extract.store import CacheEntry
from nctransfer.stats import FeatureStats
from nctransfer.utils import distributed as D


def slice_bounds(n: int, batch_size: int, rank: int, world: int) -> tuple[int, int]:
    """``[lo, hi)`` of ``rank``'s slice: contiguous whole batches, balanced to within one batch.

    Examples:
        >>> [slice_bounds(45, 8, r, 2) for r in range(2)]   # 6 batches (the last of 5): 3 + 3
        [(0, 24), (24, 45)]
        >>> [slice_bounds(5, 4, r, 3) for r in range(3)]    # fewer batches than ranks: an empty slice
        [(0, 4), (4, 5), (5, 5)]
    """
    n_batches = -(-n // batch_size)
    per, extra = divmod(n_batches, world)
    b0 = rank * per + min(rank, extra)
    b1 = b0 + per + (1 if rank < extra else 0)
    return min(n, b0 * batch_size), min(n, b1 * batch_size)


class DatasetSlice:
    """Samples ``[lo, hi)`` of a map-style dataset, with a fingerprint of its own (so each rank slice is its own
    cache entry). Keeps ``get_batch`` (batched transform) when the dataset has it."""

    def __init__(self, dataset: Any, lo: int, hi: int, dataset_id: str | None = None) -> None:
        self.dataset, self.lo, self.hi = dataset, int(lo), int(hi)
        self._id = dataset_id
        if hasattr(dataset, "get_batch"):
            self.get_batch = self._get_batch

    def __len__(self) -> int:
        return self.hi - self.lo

    def __getitem__(self, i: int) -> Any:
        if not 0 <= i < len(self):
            raise IndexError(i)
        return self.dataset[self.lo + i]

    def _get_batch(self, idx: Any) -> Any:
        return self.dataset.get_batch(np.asarray(idx) + self.lo)

    def fingerprint(self) -> str | None:
        base = self._id
        if base is None:
            fp = getattr(self.dataset, "fingerprint", None)
            base = fp() if callable(fp) else None
        return None if base is None else f"{base}#rows[{self.lo}:{self.hi}]of{len(self.dataset)}"


def _check_map_style(dataset: Any) -> None:
    if hasattr(dataset, "get_batch") or (hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__")
                                         and not hasattr(dataset, "iter_batches")):
        return
    raise InputValueError(f"dataset: data-parallel extraction needs a map-style dataset (len() and indexing, or "
                          f"get_batch) that every rank can slice; got {type(dataset).__name__}. Use "
                          "nctransfer.data.load_dataset(...) or a torch Dataset, or run in one process.")


def extract_sharded(model: Any, dataset: Any, taps: Any = "all", **kwargs: Any) -> Any:
    """:func:`nctransfer.extract.extract` split across the processes of the default process group.

    Same arguments and result as :func:`~nctransfer.extract.extract` (``device=None`` means ``cuda:LOCAL_RANK``
    when CUDA is available). Every rank must call it with the same arguments. Each rank's ``TapResult.stats`` is
    the statistics of the whole dataset; ``TapResult.features`` (with ``store_features=True``) the whole ``[N, d]``
    array in the original order. ``ExtractionResult.shard_paths`` lists the rank entries (with a cache).
    """
    from nctransfer.extract.core import extract  # deferred: the mutual recursion extract -> extract_sharded -> extract

    t0 = time.perf_counter()
    rank, world = D.rank_and_world()
    _check_map_style(dataset)
    n = len(dataset)
    if n == 0:
        raise InputValueError("dataset is empty.")
    batch_size = kwargs.get("batch_size", 64)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputValueError(f"batch_size must be a positive integer; got {batch_size!r}.")
    lo, hi = slice_bounds(n, batch_size, rank, world)
    if kwargs.get("device") is None:
        kwargs["device"] = D.local_device()
    kwargs["distributed"] = False
    store = bool(kwargs.get("store_features", False))
    part = DatasetSlice(dataset, lo, hi, kwargs.pop("dataset_id", None))
    if kwargs.get("desc") is None:
        kwargs["desc"] = f"extract [rank {rank}/{world}]"
    local = extract(model, part, taps, **kwargs) if hi > lo else None
    # every rank learns the tap names and widths (an empty slice has none of its own)
    meta = D.all_gather_object(None if local is None else {
        "taps": local.taps, "dims": {t: local[t].dim for t in local.taps}, "path": None if local.cache_path is None
        else str(local.cache_path), "from_cache": local.from_cache, "computed": local.computed_samples,
        "resumed": local.resumed_shards})
    first = next(m for m in meta if m is not None)
    tap_names: list[str] = list(first["taps"])  # type: ignore[index]
    precision = kwargs.get("precision", "exact")
    results: dict[str, TapResult] = {}
    gathered: dict[str, list[Any]] = {}
    cached = all(m is None or m["path"] is not None for m in meta)  # type: ignore[index]
    for t in tap_names:
        st = local[t].stats.copy() if local is not None else FeatureStats(precision=precision)
        st.all_reduce()
        if store and not cached:  # no shared cache: the features travel through the process group
            gathered[t] = D.all_gather_object(None if local is None else (local[t].features, local[t].labels))
        results[t] = TapResult(t, st, int(first["dims"][t]))  # type: ignore[index]
    paths = [m["path"] for m in meta if m is not None]  # type: ignore[index]
    for t in tap_names:
        if not store:
            continue
        if cached:
            results[t]._loader = (lambda t=t: _concat([CacheEntry.open(Path(p)).load_features(t)  # type: ignore
                                                       for p in paths]))
            results[t]._batches = (lambda t=t: (b for p in paths  # rank entries in rank order: original order
                                                for b in CacheEntry.open(Path(p)).iter_features(t)))  # type: ignore
        else:
            parts = [g for g in gathered[t] if g is not None]
            results[t]._features = np.concatenate([g[0] for g in parts])
            results[t]._labels = np.concatenate([g[1] for g in parts])
    key = dict(local.key) if local is not None else {}
    key["distributed"] = {"world": world}
    res = ExtractionResult(results, n_samples=n, from_cache=all(m is None or m["from_cache"] for m in meta),
                           resumed_shards=sum(int(m["resumed"]) for m in meta if m is not None),
                           computed_samples=sum(int(m["computed"]) for m in meta if m is not None),
                           cache_path=None if local is None else local.cache_path, seconds=time.perf_counter() - t0,
                           key=key)
    res.shard_paths = [Path(p) for p in paths] if cached else []  # type: ignore[attr-defined]
    res.rank, res.world_size, res.slice = rank, world, (lo, hi)  # type: ignore[attr-defined]
    return res


def _concat(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
